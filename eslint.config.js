// Lints the UI (Vue + TypeScript) and the end-to-end tests.
import pluginVue from 'eslint-plugin-vue'
import { defineConfigWithVueTs, vueTsConfigs } from '@vue/eslint-config-typescript'

export default defineConfigWithVueTs(
  { ignores: ['ui/dist/**', 'ui/src/bindings/**', 'target/**', 'node_modules/**'] },
  pluginVue.configs['flat/recommended'],
  vueTsConfigs.recommended,
  {
    rules: {
      'vue/max-attributes-per-line': 'off',
      'vue/singleline-html-element-content-newline': 'off',
      'vue/html-self-closing': 'off',
      // Log lines and labels are whitespace-sensitive.
      'vue/multiline-html-element-content-newline': 'off',
    },
  },
)
