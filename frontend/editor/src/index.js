// The visual email editor and the drafts' autosave, mounted on every element that asks for them
// (templates/broadcasts/partials/visual_editor.html; a form with data-autosave-url).
import "./editor.css";
import { mountEditor } from "./editor.js";
import { mountAutosave } from "./autosave.js";

function mountAll() {
  for (const root of document.querySelectorAll("[data-email-editor]")) mountEditor(root);
  for (const form of document.querySelectorAll("form[data-autosave-url]")) mountAutosave(form);
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", mountAll);
else mountAll();
