// Bundles GraphiQL into one JS and one CSS file: `node build.mjs [OUT_DIR]`.
// gateway/build.rs runs it with Cargo's OUT_DIR; the gateway embeds both files.
import { build } from 'esbuild';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(process.argv[2] || path.join(here, 'dist'));

await build({
  entryPoints: { graphiql: path.join(here, 'src', 'index.jsx') },
  outdir,
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  platform: 'browser',
  legalComments: 'none',
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
  loader: { '.woff2': 'dataurl', '.woff': 'dataurl', '.svg': 'dataurl' },
});
console.log(`playground bundle written to ${outdir}`);
