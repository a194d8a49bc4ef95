// What a body becomes when the creator switches its format: Markdown to the editor's HTML input
// (a small subset: headings, lists, quotes, code blocks, rules, images, links, bold, italic,
// strike, code, a `{{ snippet.key }}` line as a snippet block; anything else stays as text), and
// the document to Markdown.

const escapeHtml = (text) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

function inlineHtml(text) {
  const codes = [];
  let html = escapeHtml(text).replace(/`([^`]+)`/g, (_all, code) => `\u0000${codes.push(code) - 1}\u0000`);
  html = html
    .replace(/!\[([^\]]*)\]\(([^)\s]+)\)/g, '<img alt="$1" src="$2">')
    .replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, '<a href="$2">$1</a>')
    .replace(/\*\*([^*]+)\*\*|__([^_]+)__/g, (_all, a, b) => `<strong>${a || b}</strong>`)
    .replace(/\*([^*]+)\*|\b_([^_]+)_\b/g, (_all, a, b) => `<em>${a || b}</em>`)
    .replace(/~~([^~]+)~~/g, "<s>$1</s>");
  return html.replace(/\u0000(\d+)\u0000/g, (_all, index) => `<code>${codes[index]}</code>`);
}

/** Markdown as the HTML TipTap parses, block by block. */
export function markdownToHtml(markdown) {
  const lines = markdown.replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let index = 0;
  const take = (test) => {
    const taken = [];
    while (index < lines.length && test(lines[index])) taken.push(lines[index++]);
    return taken;
  };
  while (index < lines.length) {
    const line = lines[index];
    let match;
    if (!line.trim()) {
      index++;
    } else if ((match = /^\s*\{\{-?\s*snippet\.([a-z0-9]+(?:[-_][a-z0-9]+)*)\s*-?\}\}\s*$/.exec(line))) {
      // A snippet on a line of its own is a snippet block again.
      index++;
      out.push(`<div data-type="snippet" data-key="${match[1]}"></div>`);
    } else if (line.startsWith("```")) {
      index++;
      const code = take((current) => !current.startsWith("```"));
      index++;
      out.push(`<pre><code>${escapeHtml(code.join("\n"))}</code></pre>`);
    } else if ((match = /^(#{1,6})\s+(.*)$/.exec(line))) {
      index++;
      out.push(`<h${Math.min(3, match[1].length)}>${inlineHtml(match[2])}</h${Math.min(3, match[1].length)}>`);
    } else if (/^(\*\s*\*\s*\*|-\s*-\s*-|_\s*_\s*_)[\s*_-]*$/.test(line)) {
      index++;
      out.push("<hr>");
    } else if (/^>\s?/.test(line)) {
      const quoted = take((current) => /^>\s?/.test(current)).map((current) => current.replace(/^>\s?/, ""));
      out.push(`<blockquote>${markdownToHtml(quoted.join("\n"))}</blockquote>`);
    } else if (/^\s*[-*+]\s+/.test(line)) {
      const items = take((current) => /^\s*[-*+]\s+/.test(current));
      out.push(`<ul>${items.map((item) => `<li><p>${inlineHtml(item.replace(/^\s*[-*+]\s+/, ""))}</p></li>`).join("")}</ul>`);
    } else if ((match = /^\s*(\d+)[.)]\s+/.exec(line))) {
      const items = take((current) => /^\s*\d+[.)]\s+/.test(current));
      out.push(`<ol start="${match[1]}">${items.map((item) => `<li><p>${inlineHtml(item.replace(/^\s*\d+[.)]\s+/, ""))}</p></li>`).join("")}</ol>`);
    } else {
      const paragraph = take((current) => current.trim() && !/^(#{1,6}\s|>|```|\s*[-*+]\s+|\s*\d+[.)]\s+)/.test(current));
      out.push(`<p>${paragraph.map(inlineHtml).join("<br>")}</p>`);
    }
  }
  return out.join("");
}

function inlineMarkdown(nodes) {
  return (nodes || [])
    .map((node) => {
      if (node.type === "hardBreak") return "  \n";
      let text = node.text || "";
      for (const mark of node.marks || []) {
        if (mark.type === "bold") text = `**${text}**`;
        else if (mark.type === "italic") text = `*${text}*`;
        else if (mark.type === "strike") text = `~~${text}~~`;
        else if (mark.type === "code") text = `\`${text}\``;
        else if (mark.type === "link") text = `[${text}](${mark.attrs.href})`;
      }
      return text;
    })
    .join("");
}

function blockMarkdown(node, prefix = "") {
  const attrs = node.attrs || {};
  const children = (glue) => (node.content || []).map((child) => blockMarkdown(child)).join(glue);
  switch (node.type) {
    case "paragraph":
      return inlineMarkdown(node.content);
    case "heading":
      return `${"#".repeat(attrs.level)} ${inlineMarkdown(node.content)}`;
    case "bulletList":
    case "orderedList":
      return (node.content || [])
        .map((item, number) => {
          const marker = node.type === "bulletList" ? "- " : `${(attrs.start || 1) + number}. `;
          const body = (item.content || []).map((child) => blockMarkdown(child)).join("\n");
          return marker + body.replace(/\n/g, `\n${" ".repeat(marker.length)}`);
        })
        .join("\n");
    case "blockquote":
      return children("\n\n").replace(/^/gm, "> ");
    case "codeBlock":
      return `\`\`\`\n${inlineMarkdown(node.content)}\n\`\`\``;
    case "horizontalRule":
      return "---";
    case "image": {
      const image = `![${attrs.alt || ""}](${attrs.src})`;
      return attrs.href ? `[${image}](${attrs.href})` : image;
    }
    case "button":
      return `[${attrs.text}](${attrs.href})`;
    case "spacer":
      return prefix;
    case "snippet":
      // Markdown names a snippet in Liquid; the server expands it in place.
      return `{{ snippet.${attrs.key} }}`;
    default:
      return children("\n\n");
  }
}

/** The document (contract JSON) as Markdown: what the editor shows in Markdown's terms (a
 * snippet as `{{ snippet.key }}`); spacers have none and are left out. */
export function documentToMarkdown(doc) {
  return (doc.content || [])
    .map((node) => blockMarkdown(node))
    .filter((text) => text !== "")
    .join("\n\n");
}
