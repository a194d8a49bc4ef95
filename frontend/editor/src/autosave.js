// Autosave of a draft: a <form data-autosave-url> posts its fields there 2 s after the last change,
// and at once when the page is hidden or the focus leaves the form; what happened is shown in its
// [data-autosave-status] ("Saving…", "Saved 14:03", "Not saved: <reason>").
const DELAY_MS = 2000;

export function mountAutosave(form) {
  const url = form.dataset.autosaveUrl;
  const status = form.querySelector("[data-autosave-status]");
  if (!url || !status || form.dataset.autosaveMounted) return;
  form.dataset.autosaveMounted = "true";
  let timer = null;
  let dirty = false;
  let saving = null;

  const show = (text, failed = false) => {
    status.textContent = text;
    status.classList.toggle("autosave-failed", failed);
  };

  async function save() {
    clearTimeout(timer);
    timer = null;
    if (!dirty) return;
    if (saving) {
      await saving;
      return save();
    }
    dirty = false;
    show("Saving…");
    const body = new FormData(form);
    saving = fetch(url, {
      method: "POST",
      body,
      credentials: "same-origin",
      keepalive: document.visibilityState === "hidden",
      headers: { "X-CSRFToken": body.get("csrfmiddlewaretoken") || "", Accept: "application/json" },
    })
      .then(async (response) => {
        let data = {};
        try {
          data = await response.json();
        } catch {
          data = {};
        }
        if (response.ok && data.saved) show(`Saved ${data.saved_at}`);
        else show(`Not saved: ${data.error || `the server answered ${response.status}.`}`, true);
      })
      .catch(() => {
        dirty = true;
        show("Not saved: the connection failed. Retrying on your next change.", true);
      })
      .finally(() => {
        saving = null;
      });
    await saving;
  }

  const changed = (event) => {
    // The preview's "Preview as" belongs to the form but is not the email's content.
    if (event.target && event.target.name === "preview_email") return;
    dirty = true;
    clearTimeout(timer);
    timer = setTimeout(save, DELAY_MS);
  };
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  form.addEventListener("focusout", (event) => {
    if (!form.contains(event.relatedTarget)) save();
  });
  form.addEventListener("submit", () => {
    clearTimeout(timer);
    dirty = false;
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") save();
  });
}
