"""The committed OpenAPI document is the one the code produces."""

from __future__ import annotations

import difflib
import json

from lms.openapi_export import export
from lms.settings import PROJECT_ROOT

COMMITTED = PROJECT_ROOT / "openapi" / "openapi.json"


def test_committed_openapi_document_is_current() -> None:
    current = export()
    committed = COMMITTED.read_text(encoding="utf-8") if COMMITTED.exists() else ""
    if committed != current:
        diff = "".join(list(difflib.unified_diff(
            committed.splitlines(keepends=True), current.splitlines(keepends=True),
            "openapi/openapi.json (committed)", "lms.openapi_export.export()", n=2))[:80])
        raise AssertionError("openapi/openapi.json is out of date with the routes; run "
                             "`uv run lms openapi export` and commit the file.\n" + diff)


def test_every_operation_documents_its_problems() -> None:
    document = json.loads(export())
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation.get("operationId"), (path, method)
            if path in ("/health",):
                continue
            problem_statuses = [
                status for status, response in operation["responses"].items()
                if "application/problem+json" in response.get("content", {})]
            assert problem_statuses, f"{method.upper()} {path} lists no problem responses"
