import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it, vi } from 'vitest'

const api = vi.hoisted(() => ({ runTokens: vi.fn() }))
vi.mock('../api', () => ({ api }))

import TokenForm from './TokenForm.vue'
import { byRole } from '../test-support'

// Password fields have no ARIA role: they are found by their accessible name.
const field = (w: ReturnType<typeof mount>, name: string) => w.get(`input[type="password"][aria-label="${name}"]`)

beforeEach(() => {
  api.runTokens.mockReset()
  localStorage.clear()
  sessionStorage.clear()
})

describe('TokenForm', () => {
  it('asks for each token the run reads, sends them once and keeps them nowhere', async () => {
    api.runTokens.mockResolvedValue([
      { name: 'CLOUDFLARE_TOKEN', what: 'Cloudflare API token', required: true, given: false },
      { name: 'HF_TOKEN', what: 'Hugging Face token', required: false, given: false },
      { name: 'GITHUB_TOKEN', what: 'GitHub token', required: true, given: true },
    ])
    const w = mount(TokenForm)
    await flushPromises()
    const cloudflare = field(w, 'CLOUDFLARE_TOKEN')
    expect(cloudflare.attributes('type')).toBe('password')
    expect(cloudflare.attributes('required')).toBeDefined()
    // Optional, and already given, tokens are not required.
    expect(field(w, 'HF_TOKEN').attributes('required')).toBeUndefined()
    expect(field(w, 'GITHUB_TOKEN').attributes('required')).toBeUndefined()
    expect(w.text()).toContain('GitHub token (GITHUB_TOKEN) — given')
    await cloudflare.setValue('cf-secret-value')
    await byRole(w, 'form', 'Tokens').trigger('submit')
    expect(w.emitted('submit')).toEqual([[{ CLOUDFLARE_TOKEN: 'cf-secret-value' }]])
    // The field is cleared at once, and nothing reached the browser's storage.
    expect((field(w, 'CLOUDFLARE_TOKEN').element as HTMLInputElement).value).toBe('')
    const stored = JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage })
    expect(stored).not.toContain('cf-secret-value')
  })
})
