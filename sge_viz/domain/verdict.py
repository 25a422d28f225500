"""One image's out-of-domain verdict, and its words."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .detector import SCORE_NAME

NO_SIGNAL = "no out-of-domain signal for this model"


@dataclass(frozen=True)
class Verdict:
    """Whether one image lies outside what the model knows: its ``value`` of the detector's ``score`` (a name,
    ``describe`` says what it measures) against the model's ``threshold``; ``out_of_domain`` = value > threshold.
    A model without a measured signal gives None instead of a Verdict."""

    score: str
    value: float
    threshold: float
    out_of_domain: bool

    def to_json(self) -> dict:
        """``{"score", "value", "threshold", "out_of_domain"}``, as the JSON files and the API write it."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Verdict:
        """The Verdict ``to_json`` wrote."""
        return cls(str(d["score"]), float(d["value"]), float(d["threshold"]), bool(d["out_of_domain"]))


def verdict(value: float, threshold: float, score: str = SCORE_NAME) -> Verdict:
    """The verdict of an image scoring ``value`` against ``threshold``."""
    return Verdict(score, float(value), float(threshold), bool(value > threshold))


def verdict_json(v: Verdict | None) -> dict | None:
    """A verdict as the JSON files write it; None (no signal) stays None."""
    return None if v is None else v.to_json()


def verdict_text(v: Verdict | None, short: bool = False) -> str:
    """One line: "OUT OF DOMAIN (score 7.31 > threshold 2.3): ...", "in domain (score ... <= threshold ...)"
    or NO_SIGNAL. ``short`` leaves out the advice (for pictures)."""
    if v is None:
        return NO_SIGNAL if short else NO_SIGNAL + " (no threshold was measured): judge from its domain"
    numbers = f"score {v.value:.3g} {'>' if v.out_of_domain else '<='} threshold {v.threshold:.3g}"
    if v.out_of_domain:
        advice = "" if short else ": its predictions and gates are not evidence about this image"
        return f"OUT OF DOMAIN ({numbers}){advice}"
    return f"in domain ({numbers})"
