"""The Lessons: a class plan of short steps, every number read from our own measurements (demo/ui/measured.py).

Each lesson has a title, two or three sentences, one "Show …" view (a link the page opens in place, with
GL.openLink; `also`: a second view to contrast), what to look for, a question for the class and its answer.
The Lessons tab (lessons_tab.py) and the printable page (python -m demo.tools.lesson_plan) both draw them from
`lessons(Measured.load())`; lesson_views.warm(service) computes every view in the background at start-up.
"""
from __future__ import annotations

from dataclasses import dataclass

from demo.engine.config import GUIDES, LIMITS
from demo.engine.guidance import GUIDANCE
from demo.science.solver_study import within_noise
from demo.serving.runs import SWEEP_WEIGHTS
from demo.ui.form import COMPARE, SAMPLER_NAMES, weight_name
from demo.ui.measured import Measured
from demo.ui.page import TOY_PREFIX

__all__ = ["Lesson", "Measured", "lessons"]
SPLIT = 1.0                # the interval lesson's noise level between "high" and "low" (unless measured rows say)
INTERVAL_W = 3.0           # the interval lesson's w (unless measured rows say)
GUIDE_W = 3.0              # the guide study's "FID at w = 3 over the best"
INTRO = ("A class plan in short steps. Each **Show** button opens its view in the app (a link you can also copy "
         "from the address bar); come back here with the Lessons tab. Every number below is read from the "
         "app's own stored measurements. The answers are folded away for the teacher.")
PRINT_INTRO = ("A class plan in short steps, as in Guidance Lab's Lessons tab: each link opens its view in the app; the "
               "pictures are those views. Every number is read from the app's own stored measurements.")


@dataclass(frozen=True)
class Lesson:
    key: str
    title: str
    text: str
    show: str                                   # the button's label: "Show …"
    link: dict                                  # the view: tab and fields (query() keeps those off the defaults)
    look_for: str
    question: str
    answer: str
    also: tuple[tuple[str, dict], ...] = ()     # further views to contrast: (button label, link)

    @property
    def views(self) -> tuple[tuple[str, dict], ...]:
        return ((self.show, self.link), *self.also)


# ---- numbers as words ------------------------------------------------------------------------------------

def pct(x: float) -> str:
    return f"{x:.0%}"


def num(x: float, digits: int = 2) -> str:
    return f"{x:.{digits}f}"


def listed(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def moves(a: str, b: str, x: float, y: float) -> str:
    """'rises from a to b' / 'falls from a to b' / 'stays at a', as the numbers say."""
    return f"stays at {a}" if a == b else f"{'rises' if y > x else 'falls'} from {a} to {b}"


# ---- the lessons -----------------------------------------------------------------------------------------

def what_w(m: Measured) -> Lesson | None:
    top = max(m.weights("cfg"), default=None)
    if top is None or m.row("cfg", 0) is None:
        return None
    r0, r1 = m.row("cfg", 0), m.row("cfg", top)
    acc = moves(pct(r0["accuracy"]), pct(r1["accuracy"]), r0["accuracy"], r1["accuracy"])
    rec = moves(num(r0["recall"]), num(r1["recall"]), r0["recall"], r1["recall"])
    return Lesson(
        "what-w", "What w does",
        f"Guidance replaces the denoiser D by D + w·Δ; w = 0 is plain conditional sampling. In our stored evaluation "
        f"({m.evaluated_with()}), classifier-free guidance from w = 0 to {top:g}: the evaluation classifier's accuracy "
        f"{acc}, while recall (how much of the real digits' variety the samples cover) {rec}.",
        f"Show the w sweep: every method at w = 0 to {max(SWEEP_WEIGHTS):g}", {"tab": "sweep"},
        "Read the classifier-free row from left to right: the same noise becomes a bolder, more typical digit. Move "
        "'Sample shown' beside the grid: at large w the samples look more and more alike.",
        f"Accuracy reaches {pct(r1['accuracy'])} at w = {top:g}. Why not always guide that hard?",
        f"Because typical is not the same as varied: recall goes from {num(r0['recall'])} to {num(r1['recall'])}, "
        f"so many real ways of writing the digit are no longer produced. Guidance trades diversity for fidelity.")


def best_w(m: Measured) -> Lesson | None:
    guided = [g for g in GUIDANCE if g != "unguided" and g in m.default_w]
    unguided = m.row("unguided", 0)
    if not guided or unguided is None:
        return None

    def at(g: str) -> str:
        r = m.row(g, m.default_w[g])
        fid = f" (FID {num(r['fid_classifier_features'])})" if r else ""
        return f"{GUIDANCE[g].short_title} w = {m.default_w[g]:g}{fid}"
    top = max(m.default_w[g] for g in guided)
    largest = [GUIDANCE[g].short_title for g in guided if m.default_w[g] == top]
    return Lesson(
        "best-w", "Each method at its own w",
        f"Every method scales a different direction Δ, so the same w means a different push. The app starts each "
        f"method at its own w, read from the stored evaluation ({m.evaluated_with()}; FID: lower is closer to real "
        f"digits): {'; '.join(at(g) for g in guided)}. Unguided: FID {num(unguided['fid_classifier_features'])}.",
        "Show every method at its own w",
        {"tab": "compare", "mode": "own", **{weight_name(g): m.default_w[g] for g in guided}},
        "Go down one column: the same noise, guided six ways. Which methods change the digit's shape, and which only "
        "its strokes? The table under the picture gives each row's share read correctly.",
        f"{listed(largest)} run{'s' * (len(largest) == 1)} at the largest w ({top:g}). Does a larger w push "
        f"harder?",
        "Not necessarily: w multiplies each method's own Δ, whose size differs. Click a digit and look at the "
        "trajectory panel's second plot, how far guidance moves the x0 estimate: that is the push itself.")


def fooled(m: Measured) -> Lesson | None:
    top = max(m.weights("classifier"), default=None)
    if top is None or m.row("classifier", 0) is None or m.row("cfg", top) is None:
        return None
    r0, r1, cfg = m.row("classifier", 0), m.row("classifier", top), m.row("cfg", top)
    g0, g1 = r0["guiding_classifier_confidence"], r1["guiding_classifier_confidence"]
    text = (f"Classifier guidance follows the gradient of a noisy classifier: it pushes the image towards whatever "
            f"that classifier takes for the digit. In the stored evaluation, from w = 0 to {top:g} its own "
            f"classifier's confidence {moves(num(g0), num(g1), g0, g1)}, while the separate evaluation classifier "
            f"reads {pct(r1['accuracy'])} of its samples correctly at w = {top:g} (classifier-free guidance: "
            f"{pct(cfg['accuracy'])}).")
    link = {"tab": "compare", "mode": "own", weight_name("classifier"): top}
    look = "The classifier row against the classifier-free row; the w sweep tab's last plot shows the same gap."
    hit = m.samples.get("fooled")
    if hit:
        read = (f"the evaluation classifier reads it as a {hit['eval_reads']}" if hit["eval_reads"] != hit["label"]
                else f"the evaluation classifier reads a {hit['label']} ({pct(hit['eval_p_label'])}) but finds it "
                     f"unrealistic, far from every real digit")
        text += (f" Followed here: sample {hit['sample'] + 1} of digit {hit['label']} (seed {hit['seed']}, "
                 f"w = {hit['w']:g}): the guiding classifier gives it p({hit['label']} | x) = "
                 f"{num(hit['guide_p_final'], 3)}, yet {read}.")
        link = {**link, **m.sample_settings(), "label": hit["label"], "seed": hit["seed"], "follow": hit["sample"],
                weight_name("classifier"): hit["w"]}
        look = (f"The outlined sample in the classifier row, and its curve in the trajectory panel's first plot "
                f"(p(target | x_t)): it climbs to {num(hit['guide_p_final'], 3)}. " + look)
    return Lesson(
        "fooled", "Classifier guidance can fool its classifier", text,
        f"Show classifier guidance at w = {link[weight_name('classifier')]:g}", link, look,
        "Why can the guiding classifier be so sure while the digit does not convince another classifier?",
        "Its gradient asks which small change of pixels raises its own p(c|x); that can be a pattern it has learnt "
        "to associate with the class rather than the digit's shape (an adversarial push). A classifier trained "
        "separately does not share those blind spots, which is why we evaluate with one.")


def gfcg(m: Measured) -> Lesson | None:
    hit = m.samples.get("switches")
    if not hit:
        return None
    steps = len(hit["reference_by_step"])
    guided = hit.get("guided_steps", list(range(steps)))          # the steps inside the guidance interval
    seen = [hit["reference_by_step"][i] for i in guided]
    path = [c for i, c in enumerate(seen) if i == 0 or c != seen[i - 1]]
    settled = next((i for i, p in enumerate(hit["p_label_by_step"]) if p >= 0.5), steps)
    where = "" if len(guided) == steps else f"while it guides (steps {guided[0]} to {guided[-1]} of {steps}), "
    return Lesson(
        "gfcg", "Gradient-free guidance pushes away from the confusing class",
        f"Gradient-free classifier guidance asks the classifier only which class the sample is most confused with, "
        f"c_ref, and pushes away from it with the denoiser: Δ = a·(D(x|c) − D(x|c_ref)). Sample {hit['sample'] + 1} "
        f"of digit {hit['label']} (seed {hit['seed']}, w = {hit['w']:g}): {where}c_ref starts as {hit['from_class']}, "
        f"first changes at step {hit['first_switch_step']} and goes {' → '.join(map(str, path))}; "
        f"p({hit['label']} | x) ends at {num(hit['p_label_by_step'][-1], 3)}.",
        f"Show the sample GFCG steers (digit {hit['label']}, seed {hit['seed']})",
        {"tab": "compare", "mode": "own", **m.sample_settings(), "label": hit["label"], "seed": hit["seed"],
         "follow": hit["sample"], weight_name("gfcg"): hit["w"]},
        f"The outlined column: the unguided sample from the same noise, and what gradient-free guidance makes of it. "
        f"Then its row in the filmstrip and its curves in the trajectory panel: "
        f"p({hit['label']} | x) stays below 0.5 until step {settled - 1} and passes it at step {settled}; from "
        f"then on a = 1 − p({hit['label']} | x) is small, so the push (the second plot) fades.",
        "Why push away from the one class the sample could turn into, instead of away from 'any digit' as "
        "classifier-free guidance does?",
        "The push is spent where the confusion is: it separates the target from its nearest rival and leaves the "
        "rest of the image alone, and it stops by itself once the classifier is sure (a = 1 − p(c|x) → 0).")


def guides(m: Measured) -> Lesson | None:
    """The recommended guide against every other offered one, at w = GUIDE_W (the issue's pair first)."""
    others = sorted((g for g in GUIDES[1:] if m.guides.get(g.key, {}).get("fid_w3_over_best")),
                    key=lambda g: g.key != "collapses_early")
    good = m.guides.get(GUIDES[0].key, {})
    if not others or not good.get("fid_w3_over_best"):
        return None
    shown = [GUIDES[0], *others]
    source = (f"the stored evaluation ({m.evaluated_with()})" if good["source"] == "evaluation" else "our guide study")

    def doubles(s: dict) -> str:
        return f"w ≈ {s['fid_doubles_at_w']:.1f}" if s.get("fid_doubles_at_w") else f"not by w = {max(s['weights']):g}"
    link = {"tab": "compare", "mode": "own", weight_name("autoguidance"): GUIDE_W}
    views = [(f"Show w = {GUIDE_W:g} with the guide '{g.label}'", {**link, "guide": g.key}) for g in [*others, GUIDES[0]]]
    return Lesson(
        "guides", "Autoguidance depends on its guide",
        f"Autoguidance extrapolates away from a weaker version of the same model: Δ = D(x|c) − D_weak(x|c), so what "
        f"the guide gets wrong decides the push. In {source}, FID at w = {GUIDE_W:g} over its best: "
        + ", ".join(f"{g.label.lower()} guide {m.guides[g.key]['fid_w3_over_best']:.1f}×" for g in shown)
        + "; FID doubles at " + ", ".join(doubles(m.guides[g.key]) for g in shown) + " (in that order).",
        views[0][0], views[0][1],
        "The autoguidance row in each view, at the same w: count its ? marks (far from every real digit) and "
        "compare the strokes with each guide. GFCG + AG uses the guide too: does its row change as much?",
        "Why should the guide be a slightly worse model of the same family, rather than any bad model?",
        "Δ = D − D_weak points at what the main model already does better than its guide; extrapolating along it "
        "removes errors the two share. A guide that is far worse everywhere, or that fails in its own way "
        "(collapsing to a few shapes), makes Δ large or points it at its own quirks, and w amplifies that. A guide "
        "that is only a little worse (smaller, trained less, the same data) keeps Δ small and on target.",
        also=tuple(views[1:]))


def interval(m: Measured) -> Lesson:
    pair = m.interval_pair()
    split, w = (pair[0]["interval"][0], pair[0]["w"]) if pair else (SPLIT, INTERVAL_W)
    d = COMPARE.defaults()
    default = (f" The app's default comparison guides only for {d['sigma_lo']:g} < σ ≤ {d['sigma_hi']:g}."
               if d["sigma_lo"] > 0 or d["sigma_hi"] < LIMITS.sigma_max else "")
    text = (f"The guidance interval (Kynkäänniemi et al. 2024) applies guidance only while σ_lo < σ ≤ σ_hi. Here "
            f"every method guides at w = {w:g}: once only at high noise (σ > {split:g}), once only at low noise "
            f"(σ ≤ {split:g}).{default}")
    if pair:
        high, low = pair
        text += (f" Measured for classifier-free guidance: accuracy {pct(high['accuracy'])} and recall "
                 f"{num(high['recall'])} at high noise only, {pct(low['accuracy'])} and {num(low['recall'])} at low "
                 f"noise only.")
    link = {"tab": "compare", "mode": "own", **{weight_name(g): w for g in GUIDANCE if g != "unguided"}}
    return Lesson(
        "interval", "Guidance interval: where w acts", text,
        f"Show guidance only at high noise (σ > {split:g})",
        {**link, "sigma_lo": split, "sigma_hi": LIMITS.sigma_max},
        "Compare every guided row with the unguided one, in both views: at high noise guidance can change which digit "
        "forms and its overall shape; at low noise the shape stays that of the unguided sample and only the strokes "
        "sharpen or thicken. The filmstrip shows when the shape is settled.",
        "If you could guide for only part of the way, which part would you keep?",
        "Kynkäänniemi et al. keep the middle: at the highest noise, strong guidance drives every sample towards the "
        "same typical shape (less variety); at the lowest it barely changes anything. Guiding in between keeps most "
        "of the gain, and skipping the guided evaluations elsewhere makes sampling cheaper too.",
        also=((f"Show guidance only at low noise (σ ≤ {split:g})", {**link, "sigma_lo": 0.0, "sigma_hi": split}),))


def exact(m: Measured) -> Lesson | None:
    t = m.toy
    if not t:
        return None
    std = lambda s: f"{s[0]:.2f} × {s[1]:.2f}"    # noqa: E731
    return Lesson(
        "exact", "The exact picture: what guidance really samples",
        f"In the 2-D lab every density is known exactly, so we can check the formula: guidance is meant to sample "
        f"the tilted density q_w ∝ p(x|c)·p(c|x)^w (blue). At w = {t['weight']:g}, classifier-free guidance's "
        f"{t['points']} points have their mean {t['cfg_distance']:.2f} away from q_w's (unguided points: "
        f"{t['unguided_distance']:.2f}) and a spread of {std(t['cfg_std'])} against q_w's {std(t['target_std'])}.",
        f"Show the 2-D lab at w = {t['weight']:g}", {"tab": "lab", TOY_PREFIX + "weight": t["weight"]},
        "The blue contours (q_w) and the classifier-free panel's points: they sit beyond q_w's peak, further from the "
        "other classes, in a tighter cloud. The table under the plot gives every method's moments.",
        "Guidance adds w·∇log p(c|x) to the score at every noise level. Why is that not the score of q_w?",
        "Because noising and tilting do not commute: the score of q_w after noise is not p_σ(x|c)·p_σ(c|x)^w. "
        "Guidance tilts each noisy marginal separately, so the sampler follows a path that no single density "
        "generates, and at large w it overshoots away from the other classes (Chidambaram et al. 2024).")


def sampler(m: Measured) -> Lesson | None:
    """DDIM at the reference steps against the app's default (or DPM-Solver++(2M) at 16): only with the study."""
    study = m.solver
    if not study:
        return None
    reference = study["reference"]
    d = COMPARE.defaults()
    setting = f"{d['sampler']}:{d['num_steps']}"
    setting = setting if setting != reference["setting"] else "dpmpp_2m:16"
    other = study.get("nets", {}).get(reference.get("net", "current"), {}).get(setting)
    if not other:
        return None
    keys = [k for k in reference["points"] if k in other["points"]]
    held = [k for k in keys if within_noise(other["points"][k], reference["points"][k])]
    solver, steps = setting.split(":")
    ref_solver, ref_steps = reference["setting"].split(":")
    shown = next((k for k in keys if k.startswith("cfg@")), keys[0])
    a, b = reference["points"][shown], other["points"][shown]

    name = lambda s: SAMPLER_NAMES.get(s, s).split(" (")[0]     # noqa: E731
    left = [f"{GUIDANCE[k.split('@')[0]].short_title} at w = {k.split('@')[1]}" for k in keys if k not in held]
    method, w = shown.split("@")
    every = {"tab": "compare", "sigma_lo": 0.0, "sigma_hi": LIMITS.sigma_max}     # the study guided every step
    return Lesson(
        "sampler", "The sampler: fewer steps, same digits?",
        f"A sampler follows the path from noise to digit in steps: fewer steps cost less and follow it less "
        f"exactly. The solver study compared {name(solver)} at {steps} steps with {name(ref_solver)} at {ref_steps} "
        f"(every step guided): within seed noise at {len(held)} of {len(keys)} operating points; e.g. "
        f"{GUIDANCE[method].short_title} at w = {w}: FID {num(b['fid'])} ± {num(b['fid_sd'])} against "
        f"{num(a['fid'])} ± {num(a['fid_sd'])}.",
        f"Show {name(ref_solver)} at {ref_steps} steps", {**every, "sampler": ref_solver, "num_steps": int(ref_steps)},
        "Switch between the two views: the same noise, a different number of steps. Which digits keep their shape "
        "stroke for stroke, and which change?",
        "What do fewer steps save, and what do they cost?",
        f"Each step is one network evaluation per method and row, so {steps} steps cost about {int(steps) / int(ref_steps):.0%} "
        f"of {ref_steps}. The price is a coarser path, which the study saw "
        + (f"at {listed(left)}." if left else "nowhere beyond seed noise."),
        also=((f"Show {name(solver)} at {steps} steps", {**every, "sampler": solver, "num_steps": int(steps)}),))


LESSONS = (what_w, best_w, fooled, gfcg, guides, interval, exact, sampler)


def lessons(measured: Measured) -> list[Lesson]:
    """The class plan from these measurements: every lesson whose numbers exist, in order."""
    return [lesson for make in LESSONS if (lesson := make(measured)) is not None]
