// The email document's schema (docs: notes DOCUMENT.md): StarterKit's text blocks and marks, with
// the email's own blocks (image, button, spacer, snippet) and the document's layout; and
// `contractJSON`, which keeps only what the contract allows in what the editor emits.
import { Node, mergeAttributes } from "@tiptap/core";
import StarterKit from "@tiptap/starter-kit";
import TextAlign from "@tiptap/extension-text-align";
import { ListItem } from "@tiptap/extension-list";
import Blockquote from "@tiptap/extension-blockquote";

export const ALIGNS = ["left", "center", "right"];
export const LAYOUTS = ["center", "left"];
export const BUTTON_DEFAULTS = { background: "#2563eb", color: "#ffffff", align: "center" };
export const SPACER = { min: 8, max: 96, default: 24 };
export const IMAGE_WIDTH = { min: 16, max: 600 };

const HEX = /^#[0-9a-f]{6}$/i;
const LIQUID = /^\{\{[^{}]*\}\}$/;
const WEB_URL = /^https?:\/\/\S+$/i;
const LINK_URL = /^(https?:\/\/|mailto:)\S+$/i;

export const isWebUrl = (url) => WEB_URL.test(url || "");
export const isLinkUrl = (url) => LINK_URL.test(url || "") || LIQUID.test((url || "").trim());

export function clampInt(value, min, max) {
  const number = parseInt(value, 10);
  if (Number.isNaN(number)) return null;
  return Math.min(max, Math.max(min, number));
}

const oneOf = (value, allowed, fallback) => (allowed.includes(value) ? value : fallback);
const hex = (value, fallback) => (HEX.test(value || "") ? value.toLowerCase() : fallback);
const linkOrNull = (value) => (value && isLinkUrl(value) ? value.trim() : null);

// An attribute kept in the node's `data-*` and given back from it (for copy, paste and HTML).
function dataAttr(name, parse = (value) => value) {
  return {
    default: null,
    parseHTML: (element) => {
      const value = element.getAttribute(`data-${name.toLowerCase()}`);
      return value === null ? null : parse(value);
    },
    renderHTML: () => ({}),
  };
}

const Document = Node.create({
  name: "doc",
  topNode: true,
  content: "block+",
  addAttributes() {
    return { layout: { default: "center", renderHTML: () => ({}) } };
  },
});

const EmailImage = Node.create({
  name: "image",
  group: "block",
  atom: true,
  draggable: true,
  selectable: true,
  addAttributes() {
    return {
      src: { default: null },
      alt: { default: "" },
      width: {
        default: null,
        parseHTML: (element) => clampInt(element.getAttribute("width"), IMAGE_WIDTH.min, IMAGE_WIDTH.max),
      },
      href: dataAttr("href"),
      imageId: dataAttr("imageId", (value) => clampInt(value, 1, Number.MAX_SAFE_INTEGER)),
      align: { default: "center", parseHTML: (element) => oneOf(element.getAttribute("data-align"), ALIGNS, "center") },
    };
  },
  parseHTML() {
    return [
      {
        tag: "img[src]",
        getAttrs: (element) => {
          const link = element.closest("a[href]");
          return isWebUrl(element.getAttribute("src")) ? { href: link ? linkOrNull(link.getAttribute("href")) : null } : false;
        },
      },
    ];
  },
  renderHTML({ node }) {
    const { src, alt, width, href, imageId, align } = node.attrs;
    const image = ["img", { src, alt, width: width || null, "data-href": href, "data-imageid": imageId, "data-align": align, style: `max-width:100%;${width ? "" : "width:100%;"}` }];
    return ["figure", { "data-type": "email-image", style: `text-align:${align};margin:0` }, href ? ["a", { href }, image] : image];
  },
});

const EmailButton = Node.create({
  name: "button",
  group: "block",
  atom: true,
  draggable: true,
  selectable: true,
  addAttributes() {
    const fromLink = (name, fallback) => ({
      default: fallback,
      parseHTML: (element) => element.getAttribute(`data-${name}`) ?? fallback,
      renderHTML: () => ({}),
    });
    return {
      text: fromLink("text", "Button"),
      href: fromLink("href", "https://"),
      background: fromLink("background", BUTTON_DEFAULTS.background),
      color: fromLink("color", BUTTON_DEFAULTS.color),
      align: fromLink("align", BUTTON_DEFAULTS.align),
    };
  },
  parseHTML() {
    return [{ tag: 'p[data-type="email-button"]' }];
  },
  renderHTML({ node }) {
    const { text, href, background, color, align } = node.attrs;
    return [
      "p",
      { "data-type": "email-button", "data-text": text, "data-href": href, "data-background": background, "data-color": color, "data-align": align, style: `text-align:${align}` },
      ["a", { href, style: `display:inline-block;padding:12px 24px;border-radius:6px;text-decoration:none;font-weight:600;background:${background};color:${color}` }, text],
    ];
  },
});

const Spacer = Node.create({
  name: "spacer",
  group: "block",
  atom: true,
  draggable: true,
  selectable: true,
  addAttributes() {
    return {
      height: {
        default: SPACER.default,
        parseHTML: (element) => clampInt(element.getAttribute("data-height"), SPACER.min, SPACER.max) ?? SPACER.default,
        renderHTML: () => ({}),
      },
    };
  },
  parseHTML() {
    return [{ tag: 'div[data-type="spacer"]' }];
  },
  renderHTML({ node }) {
    return ["div", { "data-type": "spacer", "data-height": node.attrs.height, style: `height:${node.attrs.height}px` }];
  },
});

// A block snippet: kept as its key (the server expands it), shown by name; `snippets` (a Map of
// key -> {name, body}) is filled once the account's snippets have loaded, then each shown block
// in `views` is told.
function snippetNode(snippets, views, onDetach) {
  return Node.create({
    name: "snippet",
    group: "block",
    atom: true,
    draggable: true,
    selectable: true,
    addAttributes() {
      return { key: { default: "", parseHTML: (element) => element.getAttribute("data-key") || "", renderHTML: () => ({}) } };
    },
    parseHTML() {
      return [{ tag: 'div[data-type="snippet"]' }];
    },
    renderHTML({ node }) {
      return ["div", mergeAttributes({ "data-type": "snippet", "data-key": node.attrs.key }), `{{ snippet.${node.attrs.key} }}`];
    },
    addNodeView() {
      return ({ node, getPos, editor }) => {
        const dom = document.createElement("div");
        dom.className = "ee-snippet";
        dom.contentEditable = "false";
        const label = document.createElement("span");
        const detach = document.createElement("button");
        detach.type = "button";
        detach.className = "ee-snippet-detach";
        detach.textContent = "Detach";
        const show = (current) => {
          const known = snippets.get(current.attrs.key);
          label.textContent = `Snippet: ${known ? known.name : current.attrs.key}`;
          detach.hidden = !known || !editor.isEditable;
          detach.setAttribute("aria-label", `Detach the snippet ${known ? known.name : current.attrs.key}: replace it by its content`);
        };
        let current = node;
        const refresh = () => show(current);
        detach.addEventListener("click", () => onDetach(getPos()));
        dom.append(label, detach);
        show(node);
        views.add(refresh);
        return {
          dom,
          update: (updated) => updated.type.name === "snippet" && ((current = updated), show(updated), true),
          destroy: () => views.delete(refresh),
          stopEvent: (event) => event.target === detach,
          ignoreMutation: () => true,
        };
      };
    },
  });
}

export function extensions({ snippets, snippetViews, onDetach }) {
  return [
    StarterKit.configure({
      document: false,
      listItem: false,
      blockquote: false,
      underline: false,
      heading: { levels: [1, 2, 3] },
      link: {
        openOnClick: false,
        autolink: true,
        defaultProtocol: "https",
        protocols: ["mailto"],
        HTMLAttributes: { rel: null, target: null, class: null },
        isAllowedUri: (url, { defaultValidate }) => LIQUID.test((url || "").trim()) || (defaultValidate(url) && isLinkUrl(url)),
      },
    }),
    Document,
    ListItem.extend({ content: "paragraph (paragraph | bulletList | orderedList)*" }),
    Blockquote.extend({ content: "(paragraph | heading | bulletList | orderedList)+" }),
    TextAlign.configure({ types: ["heading", "paragraph"], alignments: ALIGNS, defaultAlignment: null }),
    EmailImage,
    EmailButton,
    Spacer,
    snippetNode(snippets, snippetViews, onDetach),
  ];
}

const MARKS = new Set(["bold", "italic", "strike", "code"]);

function contractMarks(marks) {
  const kept = [];
  for (const mark of marks || []) {
    if (MARKS.has(mark.type)) kept.push({ type: mark.type });
    else if (mark.type === "link" && mark.attrs && isLinkUrl(mark.attrs.href)) kept.push({ type: "link", attrs: { href: mark.attrs.href.trim() } });
  }
  return kept;
}

function contractAttrs(node) {
  const attrs = node.attrs || {};
  const align = oneOf(attrs.textAlign, ALIGNS, null);
  switch (node.type) {
    case "paragraph":
      return align ? { textAlign: align } : null;
    case "heading":
      return { level: oneOf(attrs.level, [1, 2, 3], 1), ...(align ? { textAlign: align } : {}) };
    case "orderedList":
      return { start: Math.max(1, parseInt(attrs.start, 10) || 1) };
    case "codeBlock":
      return { language: typeof attrs.language === "string" && attrs.language ? attrs.language : null };
    case "image":
      return {
        src: attrs.src,
        alt: attrs.alt || "",
        width: clampInt(attrs.width, IMAGE_WIDTH.min, IMAGE_WIDTH.max),
        href: linkOrNull(attrs.href),
        imageId: Number.isInteger(attrs.imageId) ? attrs.imageId : null,
        align: oneOf(attrs.align, ALIGNS, "center"),
      };
    case "button":
      return {
        text: String(attrs.text || "").slice(0, 200) || "Button",
        href: attrs.href,
        background: hex(attrs.background, BUTTON_DEFAULTS.background),
        color: hex(attrs.color, BUTTON_DEFAULTS.color),
        align: oneOf(attrs.align, ALIGNS, BUTTON_DEFAULTS.align),
      };
    case "spacer":
      return { height: clampInt(attrs.height, SPACER.min, SPACER.max) ?? SPACER.default };
    case "snippet":
      return { key: String(attrs.key || "") };
    default:
      return null;
  }
}

/** The editor's JSON as the contract has it: only the contract's attrs and marks, no empty
 * attrs or marks, and the document's layout. */
export function contractJSON(json) {
  const convert = (node) => {
    if (node.type === "text") {
      const marks = node.type === "text" ? contractMarks(node.marks) : [];
      return marks.length ? { type: "text", text: node.text, marks } : { type: "text", text: node.text };
    }
    const out = { type: node.type };
    const attrs = contractAttrs(node);
    if (attrs) out.attrs = attrs;
    if (node.content && node.content.length) {
      out.content = node.type === "codeBlock" ? node.content.map((text) => ({ type: "text", text: text.text })) : node.content.map(convert);
    }
    return out;
  };
  return {
    type: "doc",
    attrs: { layout: oneOf(json.attrs && json.attrs.layout, LAYOUTS, "center") },
    content: (json.content || []).map(convert),
  };
}
