"""Bodies of ``/v1/records``: the record of processing activities (GDPR Art. 30) and the DSA Art. 27 disclosure.

Both documents are built by the library (:func:`governance.privacy.processing_record`,
:func:`governance.disclosure.disclosure`); these models name their top-level
fields for the OpenAPI document and let the rest through unchanged.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Disclosure", "ProcessingRecord"]


class ProcessingRecord(BaseModel):
    """The record of processing activities of the recommender, from the pack and the store's counts."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "legal_reference": "GDPR Art. 30(1)", "pack": "eu-gdpr-dsa", "pack_version": "1.0.0", "pack_hash": "9c1f...",
                    "generated_at": "2026-12-05T10:00:00+00:00", "controller": "Example Recommender GmbH",
                    "controller_details": {"name": "Example Recommender GmbH", "address": "Musterstrasse 1, 10115 Berlin", "contact": "privacy@example.com"},
                    "dpo": {"name": "Erika Mustermann", "contact": "dpo@example.com"},
                    "purposes": [{"purpose": "personalization", "lawful_basis": "consent", "consent_model": "opt_in", "legal_reference": "GDPR Art. 6(1)(a)"}],
                    "categories_of_data": {"model_inputs": ["user_id", "item_id", "timestamp", "event_type"]},
                    "recipients": ["none outside the controller"],
                    "counts": {"consent_records": {"personalization": {"granted": 120}}, "open_requests": 1, "overdue_requests": 0},
                }
            ]
        },
    )  # fmt: skip

    legal_reference: str = Field(description="GDPR Art. 30(1)")
    pack: str
    pack_version: str
    pack_hash: str
    generated_at: str
    controller: str | None = Field(description="The controller the pack declares (its name), else the pack's owner.")
    controller_details: dict[str, str] | None = Field(
        default=None, description="The declared controller's name, address and contact (GDPR Art. 30(1)(a)); null when the pack declares none."
    )
    dpo: dict[str, str] | None = Field(default=None, description="The data protection officer's name and contact; null when the pack declares none.")
    purposes: list[dict[str, Any]] = Field(description="Each purpose with its lawful basis, consent model, legal reference and allowed inputs.")
    categories_of_data: dict[str, Any]
    recipients: list[str]
    counts: dict[str, Any] = Field(description="Consent records and subjects in force per purpose and status, subject requests, decisions served.")


class Disclosure(BaseModel):
    """The main parameters of the recommender in plain language (DSA Art. 27; Art. 38's option not based on profiling)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "system": "eu-gdpr-dsa", "policy_version": "1.0.0",
                    "model": {"kind": "matrix factorization by alternating least squares (implicit feedback)", "params": {"factors": 64}},
                    "options": ["A list not based on profiling is always available: ... (DSA Art. 38)."],
                    "legal_reference": "DSA Art. 27(1), Art. 38",
                }
            ]
        },
    )  # fmt: skip

    system: str = Field(description="The pack's metadata.name.")
    policy_version: str
    model: dict[str, Any] = Field(description="What kind of model, its parameters (those of model_version when given), what it learns.")
