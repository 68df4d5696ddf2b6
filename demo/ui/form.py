"""Each endpoint's contract, stated once: its fields, named and typed, with their limits and defaults.

Everything else derives from these declarations: the widgets' ranges and defaults (the tabs), the handlers'
parameter names (Gradio's `inputs_kwargs`, so `Client(url).predict(label=3, seed=7, api_name="/compare")`
works and omitted fields take their defaults), the check of every value (`Field.check`, also installed as
each widget's preprocess so that Gradio's own coercions, such as rounding a seed of 1.5, never run first), and
the arguments of the tests, the load test and the bench (`Endpoint.defaults()`, `Endpoint.names`).

A value that is not acceptable is a RequestError of one line naming the field by its label and its API name:
"Seed (seed) must be a whole number, got 1.5".
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from demo.engine.config import GUIDES, LIMITS, NUM_CLASSES, PRESETS, Interval, SamplerConfig
from demo.engine.guidance import GUIDANCE, METHODS
from demo.engine.pipeline import Request
from demo.engine.samplers import SAMPLERS
from demo.engine.validation import RequestError, checked, shown
from demo.science import findings

GUIDED = METHODS[1:]


@dataclass(frozen=True)
class Field:
    """One parameter of an endpoint: `kind` is int, float, str or bool; numbers lie in [low, high]; a str is
    one of `choices` (values); `blank_ok`: None or '' is accepted (and means `default`)."""
    name: str
    kind: type
    default: Any
    label: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    blank_ok: bool = False

    @property
    def called(self) -> str:
        return f"{self.label} ({self.name})"

    def check(self, value: Any) -> Any:
        """The value, typed, or a RequestError naming this field."""
        if self.blank_ok and (value is None or (isinstance(value, str) and not value.strip())):
            return self.default
        if self.kind is bool:
            if not isinstance(value, bool):
                raise RequestError(f"{self.called} must be true or false, got {shown(value)}")
            return value
        if self.kind is str:
            if not isinstance(value, str) or value not in self.choices:
                raise RequestError(f"{self.called} must be one of {', '.join(map(str, self.choices))}; "
                                   f"got {shown(value)}")
            return value
        if self.choices:
            number = checked(self.called, value, min(self.choices), max(self.choices), integer=self.kind is int)
            if number not in self.choices:
                raise RequestError(f"{self.called} must be one of {', '.join(map(str, self.choices))}; "
                                   f"got {shown(value)}")
            return number
        return checked(self.called, value, self.low, self.high, integer=self.kind is int)


@dataclass(frozen=True)
class Endpoint:
    """A named endpoint and its fields, in order."""
    name: str
    fields: tuple[Field, ...]
    hidden: tuple[str, ...] = field(default=())      # fields the UI keeps in gr.State (not in the API)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def __getitem__(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    def defaults(self, **changes) -> dict[str, Any]:
        """Every field's default, with `changes` (by name) applied: the keyword arguments of a full call."""
        unknown = set(changes) - set(self.names)
        if unknown:
            raise KeyError(f"/{self.name} has no field {', '.join(sorted(unknown))}")
        return {f.name: changes.get(f.name, f.default) for f in self.fields}

    def api_defaults(self, **changes) -> dict[str, Any]:
        """defaults() without the UI-only fields: what an API client may send."""
        return {k: v for k, v in self.defaults(**changes).items() if k not in self.hidden}

    def check(self, values: Mapping[str, Any]) -> SimpleNamespace:
        """Every field checked (missing ones take their defaults; unknown names are refused)."""
        unknown = set(values) - set(self.names)
        if unknown:
            raise RequestError(f"/{self.name} has no parameter {', '.join(sorted(map(shown, unknown)))}; "
                               f"its parameters: {', '.join(self.names)}")
        return SimpleNamespace(**{f.name: f.check(values.get(f.name, f.default)) for f in self.fields})


def from_text(field: Field, text: str):
    """A value written in a link, typed for `field` where it reads as one (else the text, for check to refuse)."""
    text = text.strip()
    if field.kind is bool:
        return {"true": True, "1": True, "false": False, "0": False}.get(text.lower(), text)
    if field.kind in (int, float):
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if field.kind is int and number.is_integer() else number
    return text


def from_link(endpoint: Endpoint, params: Mapping[str, str], prefix: str = "") -> tuple[dict[str, Any], list[str]]:
    """The fields a link sets (`prefix` + field name = value), each checked; and one phrase per value that was
    refused (the field keeps its default). Parameters without the prefix belong to other endpoints."""
    values, problems = {}, []
    for key, text in params.items():
        if not key.startswith(prefix) or key[len(prefix):] not in endpoint.names:
            continue
        field = endpoint[key[len(prefix):]]
        try:
            values[field.name] = field.check(from_text(field, text))
        except RequestError as error:
            problems.append(str(error))
    return values, problems


def weight_name(method: str) -> str:
    """The API name of a guided method's own w: w_cfg, w_autoguidance, ..."""
    return f"w_{method}"


# ---- the fields ------------------------------------------------------------------------------------------

SAMPLER_NAMES = {"ddim": "DDIM (deterministic)", "ancestral": "Ancestral (stochastic)",
                 "dpmpp_2m": "DPM-Solver++(2M)", "dpmpp_3m": "DPM-Solver++(3M)"}
LABEL = Field("label", int, 3, "Digit", choices=tuple(range(NUM_CLASSES)))
MODE = Field("mode", str, "own", "Guidance weight mode", choices=("same", "own"))
WEIGHT = Field("weight", float, 1.0, "w (all methods)", 0.0, LIMITS.max_weight)
METHOD_WEIGHTS = tuple(Field(weight_name(m), float, findings.default_weight(m), f"w · {GUIDANCE[m].short_title}",
                             0.0, LIMITS.max_weight) for m in GUIDED)
GUIDE = Field("guide", str, GUIDES[0].key, "Autoguidance's guide", choices=tuple(g.key for g in GUIDES))
DEFAULT = PRESETS[0]              # the app's default steps and guidance interval (engine.config.PRESETS)
NUM_STEPS = Field("num_steps", int, DEFAULT.sampler.num_steps, "Steps", 1, LIMITS.max_steps)
SAMPLER = Field("sampler", str, DEFAULT.sampler.sampler, "Sampler", choices=tuple(SAMPLERS))
NUM_SAMPLES = Field("num_samples", int, 8, "Samples per method", 1, LIMITS.max_samples)
SEED = Field("seed", int, 0, "Seed", 0, LIMITS.max_seed)
SIGMA_LO = Field("sigma_lo", float, DEFAULT.interval.sigma_lo, "σ_lo", 0.0, LIMITS.sigma_max, blank_ok=True)
SIGMA_HI = Field("sigma_hi", float, min(DEFAULT.interval.sigma_hi, LIMITS.sigma_max), "σ_hi", 0.0, LIMITS.sigma_max,
                 blank_ok=True)
FOLLOW = Field("follow", int, 0, "Followed sample", 0, LIMITS.max_samples - 1)
FORMING = Field("forming", str, "x0", "While it samples, each tile shows", choices=("x0", "xt"))

SAMPLING = (NUM_STEPS, SAMPLER, NUM_SAMPLES, SEED, SIGMA_LO, SIGMA_HI)
COMPARE = Endpoint("compare", (LABEL, MODE, WEIGHT, *METHOD_WEIGHTS, GUIDE, *SAMPLING, FORMING, FOLLOW),
                   hidden=("follow",))
TRAJECTORY = Endpoint("trajectory", COMPARE.fields, hidden=COMPARE.hidden)
SWEEP = Endpoint("sweep", (LABEL, GUIDE, *SAMPLING, Field("sample", int, 1, "Sample shown", 1, LIMITS.max_samples)))


# ---- values -> requests ----------------------------------------------------------------------------------

def base_request(v: SimpleNamespace, method: str = "unguided", weight: float = 0.0) -> Request:
    """The request every method of a comparison (or sweep) shares, from checked values."""
    return Request(label=v.label, method=method, weight=weight, num_samples=v.num_samples, seed=v.seed,
                   sampler=SamplerConfig(num_steps=v.num_steps, sampler=v.sampler),
                   interval=Interval(v.sigma_lo, v.sigma_hi),
                   guide=v.guide)


def comparison(v: SimpleNamespace) -> tuple[Request, dict[str, float]]:
    """(base request, w per guided method): "same" gives every method `weight`, "own" each its w_<method>."""
    base = base_request(v, weight=v.weight)
    if v.mode == "same":
        return base, {m: v.weight for m in GUIDED}
    return base, {m: getattr(v, weight_name(m)) for m in GUIDED}


def preset_values(key: str) -> dict[str, Any]:
    """The fields a preset sets (steps, sampler, interval)."""
    preset = next(p for p in PRESETS if p.key == key)
    return {"num_steps": preset.sampler.num_steps, "sampler": preset.sampler.sampler,
            "sigma_lo": preset.interval.sigma_lo, "sigma_hi": min(preset.interval.sigma_hi, LIMITS.sigma_max)}


def comparison_of(**values) -> tuple[Request, dict[str, float]]:
    """comparison() from keyword values (missing ones at their defaults): for tests, tools and warm-up."""
    return comparison(COMPARE.check(values))


# ---- the 2-D lab -----------------------------------------------------------------------------------------

def _toy_fields() -> tuple[Field, ...]:
    from demo.toy.mixture import PRESETS
    largest = max(preset().num_classes for preset in PRESETS.values())
    return (Field("preset", str, list(PRESETS)[1], "Mixture", choices=tuple(PRESETS)),
            Field("label", int, 0, "Class", 0, largest - 1),
            Field("weight", float, 3.0, "Guidance weight w", 0.0, LIMITS.max_weight),
            Field("num_steps", int, 100, "Steps", 1, LIMITS.max_steps),
            Field("num_samples", int, 500, "Points", 10, LIMITS.max_toy_points),
            Field("seed", int, 0, "Seed", 0, LIMITS.max_seed),
            Field("show_field", bool, False, "Show the guidance vector field"),
            Field("field_step", int, 70, "Vector field at step", 0, LIMITS.max_steps))


TOY = Endpoint("toy", _toy_fields())
