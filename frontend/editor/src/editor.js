// One visual editor, mounted on a <div data-email-editor> beside its textarea (the source of
// truth): loads the document from it, writes it back on every change and dispatches `input` on
// it, so the form's live preview and autosave follow.
import { Editor, Extension } from "@tiptap/core";
import { NodeSelection } from "@tiptap/pm/state";
import { ALIGNS, BUTTON_DEFAULTS, IMAGE_WIDTH, SPACER, clampInt, contractJSON, extensions, isLinkUrl, isWebUrl } from "./schema.js";
import { documentToMarkdown, markdownToHtml } from "./convert.js";

const VISUAL = "visual";
const FIRST_NAME = '{{ subscriber.first_name | default: "friend" }}';
const EMPTY = { type: "doc", attrs: { layout: "center" }, content: [{ type: "paragraph" }] };

function element(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter(Boolean));
  return node;
}

// Toolbar icons drawn as SVG strokes: symbol and emoji glyphs are missing from many systems'
// fonts (a link or image button would show an empty box).
const ICONS = {
  link: "M10 13a5 5 0 0 0 7.07 0l3-3a5 5 0 0 0-7.07-7.07l-1 1M14 11a5 5 0 0 0-7.07 0l-3 3a5 5 0 0 0 7.07 7.07l1-1",
  image: "M5 3h14a2 2 0 0 1 2 2v14a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V5a2 2 0 0 1 2-2zM21 15l-5-5L5 21M8.5 10a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3z",
  left: "M17 10H3M21 6H3M21 14H3M17 18H3",
  center: "M18 10H6M21 6H3M21 14H3M18 18H6",
  right: "M21 10H7M21 6H3M21 14H3M21 18H7",
  divider: "M3 12h18",
  button: "M7 8h10a4 4 0 0 1 0 8H7a4 4 0 0 1 0-8z",
  spacer: "M12 3v18M8 7l4-4 4 4M8 17l4 4 4-4",
};

function icon(name) {
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  for (const [attr, value] of Object.entries({ viewBox: "0 0 24 24", width: "18", height: "18", fill: "none", stroke: "currentColor", "stroke-width": "2", "stroke-linecap": "round", "stroke-linejoin": "round", "aria-hidden": "true", focusable: "false" })) svg.setAttribute(attr, value);
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

// A document as JSON text (the body field) or already parsed (the snippet library's bodies).
function parseDocument(source) {
  try {
    const doc = typeof source === "string" ? JSON.parse(source) : source;
    return doc && doc.type === "doc" ? doc : null;
  } catch {
    return null;
  }
}

function csrfToken(form) {
  const input = form && form.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const cookie = document.cookie.split("; ").find((part) => part.startsWith("csrftoken="));
  return cookie ? decodeURIComponent(cookie.slice(10)) : "";
}

async function jsonFrom(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}

// A typed address without a scheme is taken as a web address.
function linkTyped(value) {
  const url = value.trim();
  if (!url || isLinkUrl(url)) return url;
  if (/^[^\s/@]+\.[^\s]+$/.test(url)) return `https://${url}`;
  if (/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(url)) return `mailto:${url}`;
  return url;
}

export function mountEditor(root) {
  const textarea = document.getElementById(root.dataset.input);
  if (!textarea || root.dataset.mounted) return null;
  root.dataset.mounted = "true";
  const form = textarea.form;
  const source = textarea.closest("[data-email-source]") || textarea;
  const urls = { upload: root.dataset.uploadUrl || "", images: root.dataset.imagesUrl || "", snippets: root.dataset.snippetsUrl || "" };
  let fields = [];
  try {
    fields = JSON.parse(root.dataset.fields || "[]");
  } catch {
    fields = [];
  }
  const snippets = new Map();
  const snippetViews = new Set();
  const formatInputs = form ? [...form.querySelectorAll("input[name=body_format]")] : [];
  const checkedFormat = () => (formatInputs.find((input) => input.checked) || { value: VISUAL }).value;
  let format = checkedFormat();

  // --- The parts of the page ---------------------------------------------------------------
  const status = element("p", { class: "ee-status", role: "status", "aria-live": "polite" });
  const problem = element("p", { class: "ee-problem", role: "alert", hidden: true });
  const toolbar = element("div", { class: "ee-toolbar", role: "toolbar", "aria-label": "Formatting", "aria-controls": `${textarea.id}-content` });
  const panel = element("div", { class: "ee-panel", hidden: true });
  const content = element("div", { class: "ee-content", id: `${textarea.id}-content` });
  const dialog = element("dialog", { class: "ee-dialog", "aria-labelledby": `${textarea.id}-dialog-title` });
  root.replaceChildren(toolbar, panel, problem, content, status, dialog);
  root.classList.add("ee");

  const say = (text) => {
    status.textContent = text;
  };
  const complain = (text) => {
    problem.textContent = text;
    problem.hidden = !text;
  };

  // --- The editor ----------------------------------------------------------------------------
  const shortcuts = Extension.create({
    name: "emailShortcuts",
    addKeyboardShortcuts() {
      return {
        "Mod-k": () => (showLinkPanel(), true),
        "Alt-F10": () => (toolbar.querySelector("button, select").focus(), true),
      };
    },
  });

  const initial = parseDocument(textarea.value);
  const editor = new Editor({
    element: content,
    extensions: [...extensions({ snippets, snippetViews, onDetach: detachSnippet }), shortcuts],
    content: format === VISUAL ? initial || EMPTY : EMPTY,
    editorProps: {
      attributes: { "aria-label": root.dataset.contentLabel || "Email content", role: "textbox", "aria-multiline": "true", class: "ee-prose" },
      handlePaste: (_view, event) => uploadFiles(event.clipboardData && event.clipboardData.files, null),
      handleDrop: (view, event) => {
        const files = event.dataTransfer && event.dataTransfer.files;
        if (!files || !files.length) return false;
        const at = view.posAtCoords({ left: event.clientX, top: event.clientY });
        return uploadFiles(files, at ? at.pos : null);
      },
    },
  });
  const documentJSON = () => contractJSON(editor.getJSON());

  function writeBack() {
    if (format !== VISUAL) return;
    const value = JSON.stringify(documentJSON());
    if (textarea.value === value) return;
    textarea.value = value;
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  }
  editor.on("update", writeBack);
  editor.on("transaction", () => {
    refreshToolbar();
    refreshPanel();
  });

  // --- Toolbar -------------------------------------------------------------------------------
  const toggles = [];
  // `face`: the button's text, or an icon's name (ICONS).
  function button(label, face, run, { active, shortcut } = {}) {
    const control = element("button", { type: "button", class: "ee-button", "aria-label": label, title: shortcut ? `${label} (${shortcut})` : label, onclick: () => run() }, face in ICONS ? icon(face) : face);
    if (active) {
      control.setAttribute("aria-pressed", "false");
      toggles.push([control, active]);
    }
    return control;
  }
  const group = (label, ...controls) => element("span", { class: "ee-group", role: "group", "aria-label": label }, ...controls);
  const chain = () => editor.chain().focus();
  const mac = /Mac|iPhone|iPad/.test(navigator.platform);
  const mod = mac ? "⌘" : "Ctrl+";

  const textStyle = element(
    "select",
    { class: "ee-select", "aria-label": "Text style", onchange: () => applyTextStyle(textStyle.value) },
    element("option", { value: "p", text: "Paragraph" }),
    element("option", { value: "1", text: "Heading 1" }),
    element("option", { value: "2", text: "Heading 2" }),
    element("option", { value: "3", text: "Heading 3" }),
  );
  function applyTextStyle(value) {
    if (value === "p") chain().setParagraph().run();
    else chain().setHeading({ level: Number(value) }).run();
  }

  const personalise = element("select", { class: "ee-select", "aria-label": "Insert personalisation", onchange: () => insertPersonalisation() });
  const snippetGroup = element("optgroup", { label: "Snippets" });
  personalise.append(
    element("option", { value: "", text: "Personalise…" }),
    element("option", { value: `text:${FIRST_NAME}`, text: "First name" }),
    ...fields.map((key) => element("option", { value: `text:{{ subscriber.${key} }}`, text: key })),
  );
  // Inserted at the cursor; with an image, a button or a snippet selected, after it (never in
  // its place).
  function insertPersonalisation() {
    const value = personalise.value;
    personalise.value = "";
    const { selection } = editor.state;
    if (value.startsWith("text:")) {
      const text = { type: "text", text: value.slice(5) };
      if (selection instanceof NodeSelection) chain().insertContentAt(selection.to, { type: "paragraph", content: [text] }).run();
      else chain().insertContent(text).run();
    } else if (value.startsWith("snippet:")) {
      insertBlock({ type: "snippet", attrs: { key: value.slice(8) } });
    }
  }

  const layout = element(
    "select",
    { class: "ee-select", "aria-label": "Layout", onchange: () => editor.view.dispatch(editor.state.tr.setDocAttribute("layout", layout.value)) },
    element("option", { value: "center", text: "Centred" }),
    element("option", { value: "left", text: "Left" }),
  );

  toolbar.append(
    group("History", button("Undo", "↶", () => chain().undo().run(), { shortcut: `${mod}Z` }), button("Redo", "↷", () => chain().redo().run(), { shortcut: mac ? "⇧⌘Z" : "Ctrl+Y" })),
    group("Text", textStyle),
    group(
      "Marks",
      button("Bold", "B", () => chain().toggleBold().run(), { active: () => editor.isActive("bold"), shortcut: `${mod}B` }),
      button("Italic", "I", () => chain().toggleItalic().run(), { active: () => editor.isActive("italic"), shortcut: `${mod}I` }),
      button("Strikethrough", "S", () => chain().toggleStrike().run(), { active: () => editor.isActive("strike"), shortcut: `${mod}Shift+S` }),
      button("Code", "</>", () => chain().toggleCode().run(), { active: () => editor.isActive("code"), shortcut: `${mod}E` }),
      button("Link", "link", () => showLinkPanel(), { active: () => editor.isActive("link"), shortcut: `${mod}K` }),
    ),
    group(
      "Blocks",
      button("Bullet list", "•", () => chain().toggleBulletList().run(), { active: () => editor.isActive("bulletList") }),
      button("Numbered list", "1.", () => chain().toggleOrderedList().run(), { active: () => editor.isActive("orderedList") }),
      button("Quote", "❝", () => chain().toggleBlockquote().run(), { active: () => editor.isActive("blockquote") }),
      button("Code block", "{ }", () => chain().toggleCodeBlock().run(), { active: () => editor.isActive("codeBlock") }),
    ),
    group("Alignment", ...ALIGNS.map((align) => button(`Align ${align}`, align, () => chain().setTextAlign(align).run(), { active: () => editor.isActive({ textAlign: align }) }))),
    group(
      "Insert",
      button("Divider", "divider", () => chain().setHorizontalRule().run()),
      button("Image", "image", () => openImageDialog(null)),
      button("Button", "button", () => insertBlock({ type: "button", attrs: { text: "Read more", href: "https://", ...BUTTON_DEFAULTS } })),
      button("Spacer", "spacer", () => insertBlock({ type: "spacer", attrs: { height: SPACER.default } })),
    ),
    group("Personalise", personalise),
    group("Document", layout),
  );

  // Arrow keys move between the toolbar's controls; Escape goes back to the text.
  toolbar.addEventListener("keydown", (event) => {
    const controls = [...toolbar.querySelectorAll("button, select")];
    const at = controls.indexOf(document.activeElement);
    if (event.key === "Escape") {
      editor.commands.focus();
      return;
    }
    if (document.activeElement.tagName === "SELECT" || at < 0) return;
    const next = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: controls.length - 1 }[event.key];
    if (next === undefined) return;
    event.preventDefault();
    controls[(next + controls.length) % controls.length].focus();
  });

  function insertBlock(node) {
    const { to } = editor.state.selection;
    editor.chain().focus().insertContentAt(to, node).run();
    const pos = findNode(to, node.type);
    if (pos !== null) editor.view.dispatch(editor.state.tr.setSelection(NodeSelection.create(editor.state.doc, pos)));
  }

  function findNode(near, type) {
    let found = null;
    editor.state.doc.descendants((node, pos) => {
      if (found === null && node.type.name === type && pos >= near - 2) found = pos;
      return found === null;
    });
    return found;
  }

  function refreshToolbar() {
    for (const [control, active] of toggles) control.setAttribute("aria-pressed", String(Boolean(active())));
    const heading = [1, 2, 3].find((level) => editor.isActive("heading", { level }));
    textStyle.value = heading ? String(heading) : "p";
    layout.value = editor.state.doc.attrs.layout || "center";
  }

  // --- The panel: the selected image's, button's or spacer's settings, or a link's ---------------
  let panelFor = null;

  function selectedNode() {
    const { selection } = editor.state;
    return selection instanceof NodeSelection && ["image", "button", "spacer"].includes(selection.node.type.name) ? selection : null;
  }

  function setAttrs(pos, attrs) {
    const node = editor.state.doc.nodeAt(pos);
    if (!node) return;
    const next = { ...node.attrs, ...attrs };
    // The panel that made the change shows it already: it is not drawn again.
    if (panelFor === `${node.type.name}@${pos}`) panel.dataset.attrs = JSON.stringify(next);
    const tr = editor.state.tr.setNodeMarkup(pos, undefined, next);
    editor.view.dispatch(tr.setSelection(NodeSelection.create(tr.doc, pos)));
  }

  function field(label, input, help) {
    const id = `${textarea.id}-panel-${label.toLowerCase().replace(/\W+/g, "-")}`;
    input.id = id;
    // Enter in a panel field applies it instead of submitting the page's form.
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        input.dispatchEvent(new Event("change"));
      }
    });
    return element("div", { class: "ee-field" }, element("label", { for: id, text: label }), input, help && element("span", { class: "ee-help", text: help }));
  }

  function alignSelect(value, onchange) {
    const select = element("select", { onchange: () => onchange(select.value) }, ...ALIGNS.map((align) => element("option", { value: align, text: align[0].toUpperCase() + align.slice(1) })));
    select.value = value;
    return select;
  }

  function textInput(value, onchange, attrs = {}) {
    const input = element("input", { type: "text", autocomplete: "off", ...attrs });
    input.value = value ?? "";
    input.addEventListener("change", () => onchange(input.value, input));
    return input;
  }

  function nodePanel({ node, from }) {
    const attrs = node.attrs;
    const set = (values) => setAttrs(from, values);
    const remove = element("button", { type: "button", class: "ee-button", text: "Remove", onclick: () => chain().deleteSelection().run() });
    if (node.type.name === "image") {
      return [
        element("h3", { text: "Image" }),
        field("Alt text", textInput(attrs.alt, (value) => set({ alt: value })), "What the image shows, for those who cannot see it."),
        field(
          "Width",
          textInput(attrs.width, (value, input) => {
            const width = value.trim() ? clampInt(value, IMAGE_WIDTH.min, IMAGE_WIDTH.max) : null;
            input.value = width ?? "";
            set({ width });
          }, { inputmode: "numeric" }),
          `${IMAGE_WIDTH.min} to ${IMAGE_WIDTH.max} px; empty: the full width.`,
        ),
        field("Image link", textInput(attrs.href, (value, input) => linkAttr(value, input, (href) => set({ href: href || null })), { placeholder: "https://…" })),
        field("Image align", alignSelect(attrs.align, (align) => set({ align }))),
        element("div", { class: "ee-actions" }, element("button", { type: "button", class: "ee-button", text: "Replace…", onclick: () => openImageDialog(from) }), remove),
      ];
    }
    if (node.type.name === "button") {
      return [
        element("h3", { text: "Button" }),
        field("Button text", textInput(attrs.text, (value, input) => {
          const text = value.trim().slice(0, 200);
          if (!text) return complain("A button needs its text."), (input.value = attrs.text);
          set({ text });
        }, { maxlength: 200 })),
        field("Button link", textInput(attrs.href, (value, input) => linkAttr(value, input, (href) => href && set({ href }), true), { placeholder: "https://…" })),
        field("Background", element("input", { type: "color", value: attrs.background, onchange: (event) => set({ background: event.target.value }) })),
        field("Text colour", element("input", { type: "color", value: attrs.color, onchange: (event) => set({ color: event.target.value }) })),
        field("Button align", alignSelect(attrs.align, (align) => set({ align }))),
        element("div", { class: "ee-actions" }, remove),
      ];
    }
    return [
      element("h3", { text: "Spacer" }),
      field("Height", textInput(attrs.height, (value, input) => {
        const height = clampInt(value, SPACER.min, SPACER.max) ?? SPACER.default;
        input.value = height;
        set({ height });
      }, { inputmode: "numeric" }), `${SPACER.min} to ${SPACER.max} px.`),
      element("div", { class: "ee-actions" }, remove),
    ];
  }

  function linkAttr(value, input, apply, required = false) {
    const href = linkTyped(value);
    if ((href || required) && !isLinkUrl(href)) {
      complain("A link starts with https://, http:// or mailto: (or is Liquid, such as {{ unsubscribe_url }}).");
      input.setAttribute("aria-invalid", "true");
      return;
    }
    complain("");
    input.removeAttribute("aria-invalid");
    input.value = href;
    apply(href);
  }

  function showPanel(key, children) {
    panelFor = key;
    panel.replaceChildren(...children);
    panel.hidden = false;
  }

  function hidePanel() {
    panelFor = null;
    panel.hidden = true;
    panel.replaceChildren();
  }

  function refreshPanel() {
    if (panelFor === "link") return;
    const selected = selectedNode();
    if (!selected) {
      if (panelFor && !panel.contains(document.activeElement)) hidePanel();
      return;
    }
    const key = `${selected.node.type.name}@${selected.from}`;
    if (key === panelFor && panel.contains(document.activeElement)) return;
    if (key === panelFor && JSON.stringify(selected.node.attrs) === panel.dataset.attrs) return;
    panel.dataset.attrs = JSON.stringify(selected.node.attrs);
    showPanel(key, nodePanel(selected));
  }

  function showLinkPanel() {
    const current = editor.getAttributes("link").href || "";
    const input = textInput(current, () => apply(), { placeholder: "https://… or {{ unsubscribe_url }}" });
    const apply = () => linkAttr(input.value, input, (href) => {
      const run = chain().extendMarkRange("link");
      if (!href) run.unsetLink().run();
      else if (editor.state.selection.empty && !editor.isActive("link")) run.insertContent({ type: "text", text: href, marks: [{ type: "link", attrs: { href } }] }).run();
      else run.setLink({ href }).run();
      hidePanel();
    });
    showPanel("link", [
      element("h3", { text: "Link" }),
      field("Link address", input),
      element(
        "div",
        { class: "ee-actions" },
        element("button", { type: "button", class: "ee-button", text: "Apply", onclick: apply }),
        current && element("button", { type: "button", class: "ee-button", text: "Remove link", onclick: () => (chain().extendMarkRange("link").unsetLink().run(), hidePanel()) }),
        element("button", { type: "button", class: "ee-button", text: "Cancel", onclick: () => (hidePanel(), editor.commands.focus()) }),
      ),
    ]);
    input.focus();
  }

  // --- Images: upload, library, URL; paste and drop ------------------------------------------------
  function imageNode(image) {
    return {
      type: "image",
      attrs: { src: image.url, alt: "", width: image.width && image.width < IMAGE_WIDTH.max ? Math.max(IMAGE_WIDTH.min, image.width) : null, imageId: image.id ?? null, href: null, align: "center" },
    };
  }

  // `replace`: the position of the image being replaced, null to insert at the selection.
  function placeImage(image, replace) {
    if (replace !== null && replace !== undefined) {
      setAttrs(replace, { src: image.url, imageId: image.id ?? null, ...(image.width ? { width: imageNode(image).attrs.width } : {}) });
    } else {
      insertBlock(imageNode(image));
    }
  }

  async function upload(file) {
    const body = new FormData();
    body.append("file", file);
    const response = await fetch(urls.upload, { method: "POST", body, headers: { "X-CSRFToken": csrfToken(form), Accept: "application/json" }, credentials: "same-origin" });
    const data = await jsonFrom(response);
    if (response.status !== 201 || !data.url) throw new Error(data.error || `The upload failed (${response.status}).`);
    return data;
  }

  function uploadFiles(files, at) {
    const images = [...(files || [])].filter((file) => file.type.startsWith("image/"));
    if (!images.length || !urls.upload) return false;
    (async () => {
      for (const file of images) {
        say(`Uploading ${file.name}…`);
        try {
          const image = await upload(file);
          if (at !== null) editor.commands.setTextSelection(Math.min(at, editor.state.doc.content.size));
          placeImage(image, null);
          say(`Uploaded ${file.name}.`);
          complain("");
        } catch (error) {
          say("");
          complain(`${file.name}: ${error.message}`);
        }
      }
    })();
    return true;
  }

  function openImageDialog(replace) {
    const title = element("h2", { id: `${textarea.id}-dialog-title`, text: replace === null ? "Add an image" : "Replace the image" });
    const error = element("p", { class: "ee-problem", role: "alert", hidden: true });
    const fail = (text) => {
      error.textContent = text;
      error.hidden = !text;
    };
    const done = (image) => {
      dialog.close();
      placeImage(image, replace);
    };
    const parts = [title, error];
    if (urls.upload) {
      const file = element("input", { type: "file", accept: "image/*" });
      file.addEventListener("change", async () => {
        if (!file.files.length) return;
        fail("");
        say("Uploading…");
        try {
          done(await upload(file.files[0]));
          say("Uploaded.");
        } catch (problem) {
          say("");
          fail(problem.message);
        }
      });
      parts.push(field("Upload an image", file, "JPEG, PNG, GIF or WebP; or paste or drop one into the text."));
    }
    if (urls.images) {
      const grid = element("div", { class: "ee-library", role: "list" });
      parts.push(
        element("div", { class: "ee-field" }, element("button", {
          type: "button",
          class: "ee-button",
          text: "Image library",
          onclick: async () => {
            grid.replaceChildren(element("p", { text: "Loading…" }));
            try {
              const response = await fetch(urls.images, { credentials: "same-origin" });
              const data = await jsonFrom(response);
              if (!response.ok) throw new Error(data.error || `The library did not load (${response.status}).`);
              const images = data.images || [];
              grid.replaceChildren(...(images.length ? images.map((image) => element("button", { type: "button", role: "listitem", class: "ee-thumb", "aria-label": `Use ${image.name || "this image"}`, onclick: () => done(image) }, element("img", { src: image.thumb_url || image.url, alt: "" }))) : [element("p", { text: "No images yet: upload one." })]));
            } catch (problem) {
              grid.replaceChildren();
              fail(problem.message);
            }
          },
        })),
        grid,
      );
    }
    const address = textInput("", () => {});
    parts.push(
      field("Image address", address, "An https:// address of an image already online."),
      element(
        "div",
        { class: "ee-actions" },
        element("button", { type: "button", class: "ee-button", text: "Use this address", onclick: () => (isWebUrl(address.value.trim()) ? done({ url: address.value.trim() }) : fail("An image address starts with https:// or http://.")) }),
        element("button", { type: "button", class: "ee-button", text: "Cancel", onclick: () => dialog.close() }),
      ),
    );
    address.addEventListener("change", () => isWebUrl(address.value.trim()) && done({ url: address.value.trim() }));
    dialog.replaceChildren(...parts);
    dialog.showModal();
  }

  // --- Snippets --------------------------------------------------------------------------------
  function detachSnippet(pos) {
    const node = editor.state.doc.nodeAt(pos);
    const known = node && snippets.get(node.attrs.key);
    const doc = known && parseDocument(known.body);
    if (!doc) return complain("This snippet's content could not be read; it stays as it is.");
    const blocks = (doc.content || []).filter((block) => block.type !== "snippet");
    editor.chain().focus().insertContentAt({ from: pos, to: pos + node.nodeSize }, blocks.length ? blocks : [{ type: "paragraph" }]).run();
  }

  // Whether the snippet of `key` is the snippet of `target`, or names it, through any depth.
  function includes(key, target) {
    if (!target) return false;
    const seen = new Set();
    const stack = [key];
    while (stack.length) {
      const at = stack.pop();
      if (at === target) return true;
      if (seen.has(at)) continue;
      seen.add(at);
      const doc = snippets.has(at) && parseDocument(snippets.get(at).body);
      if (doc) doc.content?.forEach((block) => block.type === "snippet" && stack.push(block.attrs?.key));
    }
    return false;
  }

  async function loadSnippets() {
    if (!urls.snippets) return;
    try {
      const response = await fetch(urls.snippets, { credentials: "same-origin" });
      if (!response.ok) return;
      const data = await jsonFrom(response);
      for (const snippet of data.snippets || []) snippets.set(snippet.key, snippet);
      // In a snippet's own editor, the menu leaves out the snippet and those that include it.
      const offered = [...snippets.values()].filter((snippet) => !includes(snippet.key, root.dataset.snippetKey));
      if (!offered.length) return;
      snippetGroup.replaceChildren(...offered.map((snippet) => element("option", { value: `snippet:${snippet.key}`, text: snippet.name })));
      personalise.append(snippetGroup);
      for (const refresh of snippetViews) refresh();
    } catch {
      // Without the snippets the editor works; their blocks show their keys.
    }
  }

  // --- The body's format ---------------------------------------------------------------------------
  function showFormat() {
    const visual = format === VISUAL;
    root.hidden = !visual;
    source.hidden = visual;
    if (source.removeAttribute) source.removeAttribute("data-visual");
  }

  function switchFormat(next) {
    if (next === format) return;
    const previous = format;
    if (next === VISUAL) {
      const text = textarea.value;
      const doc = parseDocument(text);
      const content = doc || (previous === "markdown" ? markdownToHtml(text) : text) || EMPTY;
      editor.commands.setContent(content, { emitUpdate: false });
      format = next;
      writeBack();
    } else {
      if (previous === VISUAL) {
        textarea.value = next === "markdown" ? documentToMarkdown(documentJSON()) : editor.getHTML();
        textarea.dispatchEvent(new Event("input", { bubbles: true }));
      }
      format = next;
    }
    showFormat();
  }

  // A file dropped on the editor but outside the text (its toolbar, its margins) is uploaded too,
  // at the cursor, instead of the browser leaving the page to show the file.
  const carriesFiles = (event) => event.dataTransfer && [...event.dataTransfer.types].includes("Files");
  root.addEventListener("dragover", (event) => {
    if (carriesFiles(event)) event.preventDefault();
  });
  root.addEventListener("drop", (event) => {
    if (event.defaultPrevented || !carriesFiles(event)) return;
    event.preventDefault();
    if (!uploadFiles(event.dataTransfer.files, null)) complain("Only images (JPEG, PNG, GIF or WebP) can be dropped into the email.");
  });

  for (const input of formatInputs) input.addEventListener("change", () => input.checked && switchFormat(input.value));
  showFormat();
  refreshToolbar();
  if (format === VISUAL && !initial && textarea.value.trim()) {
    // A body that is not a document yet (written before the visual editor): read as HTML.
    editor.commands.setContent(textarea.value, { emitUpdate: false });
    writeBack();
  }
  loadSnippets();
  root.dataset.ready = "true";
  if (window.performance && performance.mark) performance.mark("email-editor-ready");
  root.dispatchEvent(new CustomEvent("email-editor:ready", { bubbles: true }));
  return editor;
}
