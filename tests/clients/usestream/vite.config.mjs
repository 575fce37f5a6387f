// Builds the useStream test page (tests/clients/test_usestream.py builds it into a
// scratch folder with --outDir). Everything is bundled: the page loads nothing from
// anywhere but its own origin and the API it is pointed at.
import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "./",
  plugins: [react()],
  logLevel: "warn",
  build: { outDir: "dist", sourcemap: false, reportCompressedSize: false, chunkSizeWarningLimit: 2048 },
});
