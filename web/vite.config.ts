import { defineConfig } from "vite";

// Fixed output names: `tenantry dev` embeds dist/ (index.html, assets/app.js, assets/app.css).
export default defineConfig({
  build: {
    outDir: "dist",
    emptyOutDir: true,
    rollupOptions: {
      output: {
        entryFileNames: "assets/app.js",
        chunkFileNames: "assets/[name].js",
        assetFileNames: "assets/app[extname]",
      },
    },
  },
  server: { port: 5173, strictPort: true },
});
