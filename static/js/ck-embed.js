/* ck-embed.js: inline submission and the modal/slide-in styles for embedded signup forms, which
   work without it. Server text is only set as textContent. Loading it twice is harmless. */
(() => {
  "use strict";
  if (window.__ckEmbed) return window.__ckEmbed.scan();
  const FAILED = "Something went wrong, please try again.";
  const CSS = `.ck-hide{display:none!important}
.ck-form.ck-js .ck-message:empty{display:block;margin:0;padding:0}
.ck-overlay{position:fixed;inset:0;z-index:99999;display:flex;padding:1rem;overflow-y:auto;background:#111827a0}
.ck-overlay[hidden],.ck-form.ck-slide[hidden]{display:none!important}
.ck-form.ck-pop{position:relative;width:100%;max-width:28rem;margin:auto}
.ck-pop form,.ck-slide form{box-shadow:0 8px 40px #0005}
.ck-pop h2,.ck-slide h2{padding-right:2rem}
.ck-form button.ck-close{position:absolute;top:.3rem;right:.3rem;width:2.5rem;height:2.5rem;margin:0;padding:0;background:none;color:#5a6478;font-size:1.6rem}
.ck-form.ck-slide{position:fixed;z-index:99999;right:1rem;bottom:1rem;width:calc(100% - 2rem);max-width:24rem;max-height:calc(100% - 2rem);overflow-y:auto;transform:translateY(120%);transition:transform .3s}
.ck-form.ck-in{transform:none}
@media (max-width:480px){.ck-form.ck-slide{right:0;bottom:0;width:100%;max-width:none}}
@media (prefers-reduced-motion:reduce){.ck-form.ck-slide{transition:none}}`;

  const store = (key, value) => {
    try {
      if (value === undefined) return localStorage.getItem(key);
      localStorage.setItem(key, value);
    } catch (e) {} // Storage blocked: behave as on a first visit.
  };
  const make = (tag, className, text) => {
    const el = document.createElement(tag);
    el.className = className;
    el.textContent = text;
    return el;
  };
  // The browser's IANA time zone, sent in the form's hidden field: sequences may send at the
  // subscriber's own hour.
  const timeZone = (form) => {
    let zone = "";
    try {
      zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (e) {} // No Intl: the zone stays unknown.
    form.querySelectorAll("[data-ck-time-zone]").forEach((el) => (el.value = zone));
  };
  const say = (form, text, isError) => {
    const el = form.querySelector(".ck-message");
    el?.classList.toggle("ck-message--error", !!isError);
    if (el) el.textContent = text;
    return el;
  };

  function showErrors(form, uid, errors, message) {
    const general = [];
    for (const [key, value] of Object.entries(errors)) {
      const text = [].concat(value).join(" ");
      const input = [...form.elements].find((el) => el.name === key && el.tabIndex >= 0);
      if (!input) {
        general.push(text);
        continue;
      }
      const error = make("p", "ck-error", text);
      error.id = `ck-${uid}-${key}-error`;
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", error.id);
      input.after(error);
    }
    const first = form.querySelector("[aria-invalid=true]");
    say(form, general.join(" ") || (first ? "" : message || FAILED), true);
    first?.focus();
  }

  function succeed(form, uid, data, hadFocus) {
    store(`ck:${uid}:done`, "1");
    const url = String(data.redirect_url || "");
    if (/^https?:\/\//i.test(url)) return location.assign(url);
    for (const el of form.children) if (!el.matches("h2,.ck-message")) el.classList.add("ck-hide");
    const el = say(form, data.message || "Thanks!");
    if (hadFocus && el) {
      el.tabIndex = -1;
      el.focus();
    }
  }

  async function submit(form, uid) {
    const button = form.querySelector("button:not([type=button])");
    if (button?.disabled) return;
    const hadFocus = form.contains(document.activeElement); // Disabling the button blurs it.
    if (button) button.disabled = true;
    form.querySelectorAll(".ck-error").forEach((el) => el.remove());
    for (const el of form.querySelectorAll("[aria-invalid]")) {
      el.removeAttribute("aria-invalid");
      el.removeAttribute("aria-describedby");
    }
    say(form, "");
    timeZone(form);
    try {
      const response = await fetch(form.getAttribute("action"), {
        method: "POST",
        body: new FormData(form),
        headers: { Accept: "application/json" },
        credentials: "omit",
        mode: "cors",
      });
      const data = await response.json().catch(() => ({}));
      if (response.ok && data.ok) succeed(form, uid, data, hadFocus);
      else if (response.status === 400 && data.errors) showErrors(form, uid, data.errors, data.message);
      else say(form, data.message || FAILED, true);
    } catch (e) {
      say(form, "Could not reach the server, please try again.", true);
    }
    if (!button) return;
    button.disabled = false;
    if (hadFocus && document.activeElement === document.body) button.focus();
  }

  function popup(box, uid, modal) {
    const close = make("button", "ck-close", "\u00d7");
    close.type = "button";
    close.setAttribute("aria-label", "Close");
    box.prepend(close);
    const title = box.querySelector("h2");
    if (title) box.setAttribute("aria-labelledby", (title.id ||= `ck-${uid}-title`));
    else box.setAttribute("aria-label", "Sign up");
    const root = document.documentElement.style;
    const overflow = root.overflow;
    const wrap = modal ? make("div", "ck-overlay", "") : box;
    let opener, timer;

    const hide = () => {
      if (wrap.hidden) return;
      store(`ck:${uid}:closed`, Date.now());
      wrap.hidden = true;
      box.classList.remove("ck-in");
      if (!modal) return;
      root.overflow = overflow;
      document.removeEventListener("keydown", onKey, true);
      if (opener?.isConnected) opener.focus();
    };
    const onKey = (e) => {
      if (e.key === "Escape") return hide();
      if (e.key !== "Tab") return;
      const items = [...box.querySelectorAll("a[href],button,input,select,textarea")].filter(
        (el) => !el.disabled && el.tabIndex >= 0 && el.getClientRects().length
      );
      const [edge, wrapTo] = e.shiftKey ? [items[0], items.at(-1)] : [items.at(-1), items[0]];
      if (!items.includes(document.activeElement) || document.activeElement === edge) {
        e.preventDefault();
        wrapTo.focus();
      }
    };
    const onExit = (e) => !e.relatedTarget && e.clientY <= 0 && show();
    const show = () => {
      clearTimeout(timer);
      document.removeEventListener("mouseout", onExit);
      if (!wrap.hidden) return;
      opener = document.activeElement;
      wrap.hidden = false;
      // A modal or slide-in counts its view when it is shown, not when the page loads.
      if (box.dataset.ckView) new Image().src = box.dataset.ckView;
      if (!modal) {
        box.getBoundingClientRect(); // Lay out below the screen first, so it slides in.
        return box.classList.add("ck-in");
      }
      root.overflow = "hidden";
      document.addEventListener("keydown", onKey, true);
      (box.querySelector("input:not([tabindex='-1'])") || close).focus();
    };

    if (modal) {
      box.classList.add("ck-pop");
      box.setAttribute("role", "dialog");
      box.setAttribute("aria-modal", "true");
      wrap.append(box);
      wrap.addEventListener("mousedown", (e) => e.target === wrap && hide());
    } else {
      box.classList.add("ck-slide");
      box.setAttribute("role", "region");
      box.addEventListener("keydown", (e) => e.key === "Escape" && hide());
    }
    close.addEventListener("click", hide);
    wrap.hidden = true;
    document.body.append(wrap);

    // Not again after a signup, nor for a day after being closed.
    if (store(`ck:${uid}:done`) || Date.now() - store(`ck:${uid}:closed`) < 864e5) return;
    const delay = parseFloat(box.dataset.ckDelay);
    timer = setTimeout(show, (delay >= 0 ? delay : 5) * 1000);
    if (modal && matchMedia("(hover:hover) and (pointer:fine)").matches) {
      document.addEventListener("mouseout", onExit);
    }
  }

  function enhance(box) {
    const form = box.querySelector("form");
    if (!form || box.classList.contains("ck-js")) return;
    box.classList.add("ck-js");
    timeZone(form);
    if (!document.getElementById("ck-embed-css")) {
      const style = make("style", "", CSS);
      style.id = "ck-embed-css";
      document.head.append(style);
    }
    const { ckForm: uid, ckStyle: kind } = box.dataset;
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      submit(form, uid);
    });
    if (kind === "modal" || kind === "slidein") popup(box, uid, kind === "modal");
  }

  const scan = () => document.querySelectorAll(".ck-form[data-ck-form]").forEach(enhance);
  window.__ckEmbed = { scan };
  scan();
  new MutationObserver((records) => records.some((r) => r.addedNodes.length) && scan()).observe(
    document.documentElement,
    { childList: true, subtree: true }
  );
})();
