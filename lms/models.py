"""Every table of the loyalty core, imported in one place for Alembic and the schema test."""

from lms.accounts.models import Member
from lms.accrual.models import (
    EarnRule,
    FlownCoupon,
    Promotion,
    PromotionAward,
    PromotionRegistration,
)
from lms.audit.models import AuditRecord
from lms.auth.models import AccessToken, LoginFailure, StaffUser
from lms.callcentre.models import Adjustment, AdjustmentDay, AdjustmentLimit, ReasonCode
from lms.claims.models import Claim
from lms.db import Base
from lms.family.models import FamilyInvitation, FamilyMember, FamilyPool, FamilyRule
from lms.gifts.models import Gift, GiftRule
from lms.idempotency.models import IdempotencyKey
from lms.ledger.models import Account, Balance, Hold, JournalEntry, Lot, Posting
from lms.outbox.models import OutboxEvent, OutboxFeed
from lms.partners.models import (
    ApiKey,
    ApiKeyWindow,
    Partner,
    PartnerAccrual,
    PartnerAccrualReversal,
    PartnerEarnRate,
)
from lms.payments.models import PaymentEvent
from lms.purchases.models import Purchase, PurchaseRule
from lms.redemption.models import (
    PartnerHold,
    Redemption,
    RedemptionCode,
    RedemptionGuard,
    RedemptionRefund,
)
from lms.settlement.models import (
    PartnerStatement,
    PartnerStatementLine,
    PartnerStatementTotal,
)
from lms.tiers.models import ExpiryNotice, PolicySetting, Tier, TierChange
from lms.wallet.models import WalletPass, WalletPassToken, WalletRegistration
from lms.web.models import PasswordReset, WebSession
from lms.webhooks.models import WebhookDelivery, WebhookSecret

metadata = Base.metadata

__all__ = [
    "AccessToken", "Account", "Adjustment", "AdjustmentDay", "AdjustmentLimit", "ApiKey",
    "ApiKeyWindow", "AuditRecord", "Balance", "Claim",
    "EarnRule", "ExpiryNotice", "FamilyInvitation", "FamilyMember", "FamilyPool",
    "FamilyRule", "FlownCoupon", "Gift", "GiftRule", "Hold", "IdempotencyKey", "JournalEntry",
    "LoginFailure", "Lot",
    "Member", "OutboxEvent", "OutboxFeed", "Partner", "PartnerAccrual", "PartnerAccrualReversal",
    "PartnerEarnRate", "PartnerHold", "PartnerStatement", "PartnerStatementLine",
    "PartnerStatementTotal", "PasswordReset", "PaymentEvent", "PolicySetting", "Posting",
    "Promotion", "PromotionAward", "PromotionRegistration", "Purchase", "PurchaseRule",
    "ReasonCode", "Redemption", "RedemptionCode", "RedemptionGuard", "RedemptionRefund",
    "StaffUser", "Tier", "TierChange", "WalletPass", "WalletPassToken", "WalletRegistration",
    "WebSession", "WebhookDelivery", "WebhookSecret", "metadata",
]
