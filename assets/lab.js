// Guidance Lab's page-side code: the w ladder answered in the page, the link that reopens a view, Copy link.
// GL_CONFIG (fields, defaults, methods) is written by demo/ui/page.py just before this script.
(function () {
  const C = window.GL_CONFIG;
  const GL = (window.GL = { ladderKey: null, ladder: null, settleTimer: null, swaps: 0 });
  const $ = (selector, root = document) => root.querySelector(selector);

  // ---- the link: the URL is the view ------------------------------------------------------------------
  function format(value) {
    return typeof value === "number" ? String(+value.toPrecision(6)) : String(value);
  }
  GL.setParams = function (values) {              // ignored until the link that opened the page has been read
    if (!GL.ready) return;
    const url = new URL(window.location.href);
    for (const [name, value] of Object.entries(values)) {
      if (value === null || value === undefined) continue;
      if (format(value) === format(C.defaults[name] ?? "")) {
        url.searchParams.delete(name);
      } else {
        url.searchParams.set(name, format(value));
      }
    }
    window.history.replaceState(null, "", url.toString());
  };
  GL.writeLink = function (...values) {           // the compare fields, in C.fields order (a Gradio js event)
    const out = {};
    C.fields.forEach((name, i) => { if (values[i] !== null && values[i] !== undefined) out[name] = values[i]; });
    GL.setParams(out);
  };
  // Open a view in the page itself (a lesson's "Show" button): the link becomes the URL, then the same handlers
  // as on arrival read it (every tab follows it), without reloading the page.
  GL.openLink = function (query) {
    const url = new URL(window.location.href);
    url.search = query;
    window.history.replaceState(null, "", url.toString());
    $("#link-open")?.click();
  };
  GL.copyLink = function () {
    const link = window.location.href, note = $("#copy-note");
    const done = (text) => { if (note) { note.textContent = text; setTimeout(() => { note.textContent = ""; }, 4000); } };
    const fallback = () => {
      const area = document.createElement("textarea");
      area.value = link; document.body.appendChild(area); area.select();
      try { document.execCommand("copy"); done("Link copied"); } catch (e) { done(link); }
      area.remove();
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(link).then(() => done("Link copied"), fallback);
    } else {
      fallback();
    }
  };

  // ---- the w ladder in the page --------------------------------------------------------------------------
  function ladder() {
    const holder = $("#ladder-data .gl-ladder-data");
    if (!holder) return null;
    const raw = holder.getAttribute("data-ladder");
    if (raw !== GL.ladderKey) {
      GL.ladderKey = raw;
      try { GL.ladder = JSON.parse(raw); } catch (e) { GL.ladder = null; }
    }
    return GL.ladder;
  }
  function numberIn(id) {
    const input = $(`#${id} input[type=number]`);
    return input ? parseFloat(input.value) : NaN;
  }
  function mode() {
    const checked = $("#mode input:checked");
    return checked ? checked.value : C.defaults.mode;
  }
  function wanted() {                               // w per guided method, as the controls say now
    const same = mode() === "same", out = {};
    for (const m of C.guided) out[m] = same ? numberIn("weight") : numberIn(`weight-${m}`);
    return out;
  }
  // Swap every guided row to its ladder row; false (nothing changed) if the ladder cannot answer.
  GL.fromLadder = function () {
    const data = ladder(), picture = $("#comparison .gl-comparison");
    if (!data || !picture || picture.dataset.key !== data.key || picture.dataset.forming) return false;
    const weights = wanted(), rows = {};
    for (const m of C.guided) {
      const row = (data.rows[m] || {})[format(weights[m])];
      if (!row || Number.isNaN(weights[m])) return false;
      rows[m] = row;
    }
    const selected = $("#comparison .gl-cell.gl-selected");
    const follow = selected ? selected.dataset.sample : null;
    for (const m of C.guided) {
      const old = picture.querySelector(`.gl-row[data-method="${m}"]`);
      if (old && old.dataset.w !== format(weights[m])) {
        old.insertAdjacentHTML("afterend", rows[m]);
        const fresh = old.nextElementSibling;
        fresh.dataset.w = format(weights[m]);
        old.remove();
        if (follow !== null) fresh.querySelector(`.gl-cell[data-sample="${follow}"]`)?.classList.add("gl-selected");
      }
    }
    GL.swaps += 1;
    document.querySelectorAll("#summary, #status, #filmstrip").forEach((el) => el.classList.add("gl-stale"));
    const params = { mode: mode() };
    if (mode() === "same") params.weight = weights[C.guided[0]];
    else for (const m of C.guided) params[`w_${m}`] = weights[m];
    GL.setParams(params);
    return true;
  };
  function askServer(delay) {                       // the hidden button runs the comparison on the server
    clearTimeout(GL.settleTimer);
    GL.settleTimer = setTimeout(() => $("#compare-trigger")?.click(), delay);
  }
  function isWeight(target) {
    return target && target.closest && target.closest("#weight, [id^='weight-']");
  }
  document.addEventListener("input", (event) => {   // dragging a slider or typing: answer from the ladder
    if (!isWeight(event.target)) return;
    if (GL.fromLadder()) askServer(C.settleMs);      // later, once, the summary and trajectory catch up
  }, true);
  document.addEventListener("change", (event) => {  // a slider released, a number committed
    if (!isWeight(event.target)) return;
    setTimeout(() => { if (!GL.fromLadder()) askServer(0); }, 0);
  }, true);
  // ---- accessibility: names for the few Gradio controls that have none ---------------------------------------
  const NAMES = { "#gif .image-container button": "Animation of the followed sample's denoising, every method" };
  new MutationObserver(() => {
    for (const [selector, name] of Object.entries(NAMES)) {
      document.querySelectorAll(`${selector}:not([aria-label])`).forEach((el) => el.setAttribute("aria-label", name));
    }
    // an output not yet filled (the animation, the plots) is a box Gradio labels "Empty value" without a role
    document.querySelectorAll(".empty[aria-label]:not([role])").forEach((el) => el.setAttribute("role", "img"));
  }).observe(document.documentElement, { childList: true, subtree: true });

  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && isWeight(event.target)) {
      setTimeout(() => { if (!GL.fromLadder()) askServer(0); }, 0);
    }
  }, true);
})();
