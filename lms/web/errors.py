"""Errors of the web pages, each with a stable code."""

from __future__ import annotations

from lms.errors import Forbidden, LmsError, ServiceUnavailable, ValidationFailed


class CsrfRefused(Forbidden):
    code = "csrf_refused"
    title = "The form is missing its security token or it does not match; reload the page"


class SignInRequired(LmsError):
    """Not an error the user sees: the pages answer it with a redirect to sign in."""

    status = 303
    code = "sign_in_required"
    title = "Sign in to see this page"


class ResetLinkInvalid(ValidationFailed):
    code = "reset_link_invalid"
    title = "This password-reset link is not valid any more; ask for a new one"


class WalletUnavailable(ServiceUnavailable):
    code = "wallet_unavailable"
    title = "Wallet cards cannot be issued at the moment"
