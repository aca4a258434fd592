/// <reference types="vitest/config" />
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'
import vue from '@vitejs/plugin-vue'

const root = fileURLToPath(new URL('.', import.meta.url))

// The UI lives in ui/; the app embeds ui/dist (src-tauri/tauri.conf.json).
export default defineConfig({
  root,
  plugins: [vue()],
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: { outDir: 'dist', emptyOutDir: true, target: 'safari15' },
  test: {
    root,
    environment: 'jsdom',
    include: ['src/**/*.spec.ts'],
  },
})
