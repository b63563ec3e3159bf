// JsSIP's npm package ships CommonJS only (lib/JsSIP.js, requiring `events`, `debug` and
// `sdp-transform`), which a browser cannot load unbundled. This turns it into one ES module,
// vendor/jssip.js (default export = the JsSIP namespace), for pages that use no bundler, like the
// demo. It runs after `npm ci` (postinstall); vendor/ is not committed. Apps with a bundler skip
// this and `import JsSIP from 'jssip'`.
import { build } from 'esbuild';

await build({
  entryPoints: ['node_modules/jssip/lib/JsSIP.js'],
  outfile: 'vendor/jssip.js',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2020',
  minify: true,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'warning',
});
console.log('vendor/jssip.js built from', (await import('./node_modules/jssip/package.json', { with: { type: 'json' } })).default.version);
