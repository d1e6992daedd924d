"""The DSA Art. 27 disclosure: the main parameters of the recommender, in plain language.

Art. 27 asks a platform to set out, in its terms, the main parameters of its
recommender systems, the reasons for their relative importance, and the options
users have to change them (Art. 38 adds one option not based on profiling). The
text here is derived from what is actually in force, the policy pack and the
model configuration, so it cannot drift from the system it describes.
"""

from __future__ import annotations

from typing import Any

from recommender.feedback import MODEL_INPUT_COLUMNS, FeedbackConfig

__all__ = ["disclosure", "disclosure_markdown"]

_STEP_TEXT = {
    "fair_star": "items from under-exposed providers are guaranteed a minimum share of every list (FA*IR ranked group fairness)",
    "mmr": "lists are diversified so that similar items do not crowd each other out",
    "calibration": "lists are balanced to match the mix of interests in your history",
    "provider_calibration": "the mix of providers in each list is balanced to match the mix in your own history, so that providers the system already favours are not pushed beyond your own tastes",
    "popularity_debias": "very popular items are down-weighted so that less-known items get a chance",
    "exposure_cap": "no provider group may take more than a set share of a list",
    "group_proportions": "each provider group is given a target share of every list, and items are placed so that every group keeps its share from the top of the list down",
    "exposure_targets": "each provider group is given a target share of the attention every list gives out (the top place counts most), and every list is arranged so that each group's share stays within a set margin of its target, as close to the model's order as that allows",
    "amortised_exposure": "each provider group is given a target share of the attention all lists give out; a group that received less than its share in earlier lists is owed the difference, and later lists make it up where it costs little relevance (no list loses more than a set share of its ranking quality); the system keeps only totals per provider group, nothing about you",
    "exploration": "a small share of places is given to items chosen partly at random, so that the system does not only reinforce past behaviour",
}


_ALS_KIND = "matrix factorization by alternating least squares (implicit feedback)"
_ALS_LEARNS = "a small set of taste dimensions for you and for each item, from interactions only"


def _model_described(kind: str | None) -> tuple[str, str]:
    """(what the model is, what it learns) for a model of family ``kind``; ALS when not given (the default recipe).

    A model of another family is described by that family's own registered description, never as ALS.
    """
    if kind is None or kind == "als":
        return _ALS_KIND, _ALS_LEARNS
    from recommender.family import families

    family = families(available_only=False).get(kind)
    if family is None:
        return f"a model of family {kind!r}, which this installation does not describe", "from the fields listed below"
    return f"the {kind} model family ({family.description})", "from the fields listed below"


def disclosure(
    pack: Any,
    model_params: dict[str, Any] | None = None,
    feedback: FeedbackConfig | None = None,
    *,
    model_kind: str | None = None,
    model_inputs: list[str] | None = None,
) -> dict[str, Any]:
    """The disclosure as structured data (also rendered by :func:`disclosure_markdown`).

    ``model_kind`` (the recorded model's family) and ``model_inputs`` (the fields its training run recorded) describe
    the model in force; without them the default ALS recipe and its fields are described.
    """
    feedback = feedback or FeedbackConfig()
    weights = sorted(((t, w) for t, w in feedback.event_weights.items() if w > 0), key=lambda tw: -tw[1])
    signals = [
        {"signal": t, "weight": w, "why": "stronger signals of interest count more" if w > 1 else "a basic signal of interest"}
        for t, w in weights
    ]
    consent = pack.consent
    personalization = consent.purposes.get("personalization")
    steps = [
        {"step": s.name, "what": _STEP_TEXT.get(s.name, s.name), "params": s.params.model_dump()}
        for s in (pack.reranking.steps if pack.reranking.enabled else [])
    ]
    options = [
        "A list not based on profiling is always available: without a lawful basis to profile you, "
        "or if you withdraw consent or object, you get the most popular items in your context, and your history is not read (DSA Art. 38).",
    ]
    if personalization is not None and personalization.model == "opt_in":
        options.append("Personalization needs your consent; you can withdraw it at any time, as easily as you gave it (GDPR Art. 7(3)).")
    else:
        options.append("You can object to personalization at any time, also by automated means (GDPR Art. 21).")
    if consent.honour_gpc:
        options.append("A Global Privacy Control signal (Sec-GPC: 1) sent by your browser is honoured as an opt-out (CCPA regs §7025).")
    options.append("Each recommendation says why it is shown; you can ask for a copy of your data and an explanation of the logic (GDPR Art. 15(1)(h)).")
    described = _model_described(model_kind)
    return {
        "system": pack.metadata.name,
        "policy_version": pack.metadata.version,
        "model": {
            "kind": described[0],
            "params": model_params or {},
            "what_it_learns": described[1],
        },
        "inputs": list(model_inputs) if model_inputs else list(MODEL_INPUT_COLUMNS),
        "not_used": sorted(set(pack.minimization.forbidden_attributes) | set(pack.minimization.audit_only_attributes)),
        "signals": signals,
        "rating_threshold": feedback.rating_threshold,
        "post_processing": steps,
        "blocked_content": list(pack.harmful_content.blocked_categories),
        "options": options,
        "legal_reference": "DSA Art. 27(1), Art. 38",
    }


def disclosure_markdown(document: dict[str, Any]) -> str:
    """The disclosure as readable text."""
    m = document["model"]
    lines = [
        f"# How recommendations are made ({document['system']}, policy {document['policy_version']})",
        "",
        f"**Main parameters.** Recommendations come from {m['kind']}: it learns {m['what_it_learns']}. "
        f"It uses only these fields: {', '.join(document['inputs'])}.",
    ]
    if document["not_used"]:
        lines.append(f"It never uses: {', '.join(document['not_used'])}.")
    lines += ["", "**Why the signals weigh as they do.**", ""]
    for s in document["signals"]:
        lines.append(f"- {s['signal']}: weight {s['weight']:g} ({s['why']})")
    if document["rating_threshold"] is not None:
        lines.append(f"- a rating counts as interest only from {document['rating_threshold']:g} stars up")
    if document["post_processing"]:
        lines += ["", "**After the model.**", ""] + [f"- {s['what']}" for s in document["post_processing"]]
    if document["blocked_content"]:
        lines += ["", f"**Never recommended.** Content flagged as: {', '.join(document['blocked_content'])}."]
    lines += ["", "**Your options.**", ""] + [f"- {o}" for o in document["options"]]
    lines += ["", f"_{document['legal_reference']}_"]
    return "\n".join(lines) + "\n"
