"""The OpenAPI document as committed in openapi/openapi.json (stable key order)."""

from __future__ import annotations

import json

from litestar._openapi.schema_generation.examples import ExampleFactory
from litestar.serialization import encode_json

from lms.app import create_app
from lms.settings import Settings


def export() -> str:
    app = create_app(Settings(database_url="postgresql://unused/unused"))
    # The framework draws example values from one random generator per process, seeded once;
    # seeding it here gives the same document however many were built before in the process.
    ExampleFactory.seed_random(ExampleFactory.__random_seed__)
    schema = json.loads(encode_json(app.openapi_schema.to_schema()))
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
