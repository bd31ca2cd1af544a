import { defineConfig } from "vite";

// `python scripts/web.py build` passes --outDir (edge_proxy/webapp/, or a temporary folder for
// `check`) and --emptyOutDir. Envoy serves index.html at / (never cached) and every other file at
// its path (cached for good), so assets keep Vite's content-hashed names.
export default defineConfig({
  base: "/",
  build: {
    target: "es2022",
    sourcemap: false,
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
});
