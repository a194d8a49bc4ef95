// Bundles src/ into ../../static/editor/editor.js and editor.css: minified, no source maps, no
// timestamps, so the same lockfile and sources always give the same bytes (.ci/editor-check).
// `node build.mjs OUTDIR` writes elsewhere (the check builds into a temporary directory).
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = process.argv[2] ? path.resolve(process.argv[2]) : path.resolve(here, "../../static/editor");

await esbuild.build({
  absWorkingDir: here,
  entryPoints: { editor: "src/index.js" },
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  legalComments: "none",
  charset: "utf8",
  outdir,
  logLevel: "warning",
});
