import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it, vi } from 'vitest'

const api = vi.hoisted(() => ({ runTokens: vi.fn(), forgetTokens: vi.fn() }))
vi.mock('../api', () => ({ api }))

import TokenForm from './TokenForm.vue'
import { byRole } from '../test-support'

// Password fields have no ARIA role: they are found by their accessible name.
const field = (w: ReturnType<typeof mount>, name: string) => w.get(`input[type="password"][aria-label="${name}"]`)

beforeEach(() => {
  api.runTokens.mockReset()
  api.forgetTokens.mockReset()
  localStorage.clear()
  sessionStorage.clear()
})

describe('TokenForm', () => {
  it('asks for each token the run reads, sends them once and keeps them nowhere', async () => {
    api.runTokens.mockResolvedValue({
      tokens: [
        { name: 'CLOUDFLARE_TOKEN', what: 'Cloudflare API token', required: true, given: false, in_keyring: false },
        { name: 'HF_TOKEN', what: 'Hugging Face token', required: false, given: false, in_keyring: false },
        { name: 'GITHUB_TOKEN', what: 'GitHub token', required: true, given: true, in_keyring: false },
      ],
      keyring: { available: true, why: null },
    })
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
    // Sent once, and not for the keyring: its box was left as it was (unticked).
    expect(w.emitted('submit')).toEqual([[{ CLOUDFLARE_TOKEN: 'cf-secret-value' }, false]])
    // The field is cleared at once, and nothing reached the browser's storage.
    expect((field(w, 'CLOUDFLARE_TOKEN').element as HTMLInputElement).value).toBe('')
    const stored = JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage })
    expect(stored).not.toContain('cf-secret-value')
  })

  it('keeps the tokens in the keyring only when the box is ticked, and can forget them', async () => {
    api.runTokens.mockResolvedValueOnce({
      tokens: [
        { name: 'CLOUDFLARE_TOKEN', what: 'Cloudflare API token', required: true, given: true, in_keyring: true },
        { name: 'GITHUB_TOKEN', what: 'GitHub token', required: true, given: false, in_keyring: false },
      ],
      keyring: { available: true, why: null },
    })
    const w = mount(TokenForm)
    await flushPromises()
    // A token kept in the keyring is not asked for again.
    expect(w.text()).toContain('Cloudflare API token (CLOUDFLARE_TOKEN) — in the keyring')
    expect(field(w, 'CLOUDFLARE_TOKEN').attributes('required')).toBeUndefined()
    const box = byRole(w, 'checkbox', /keyring/)
    expect((box.element as HTMLInputElement).disabled).toBe(false)
    expect((box.element as HTMLInputElement).checked).toBe(false)
    await box.setValue(true)
    await field(w, 'GITHUB_TOKEN').setValue('gh-secret')
    await byRole(w, 'form', 'Tokens').trigger('submit')
    expect(w.emitted('submit')).toEqual([[{ GITHUB_TOKEN: 'gh-secret' }, true]])

    api.forgetTokens.mockResolvedValue(null)
    api.runTokens.mockResolvedValueOnce({
      tokens: [
        { name: 'CLOUDFLARE_TOKEN', what: 'Cloudflare API token', required: true, given: false, in_keyring: false },
        { name: 'GITHUB_TOKEN', what: 'GitHub token', required: true, given: false, in_keyring: false },
      ],
      keyring: { available: true, why: null },
    })
    await byRole(w, 'button', 'Forget the tokens kept in the keyring').trigger('click')
    await flushPromises()
    expect(api.forgetTokens).toHaveBeenCalledTimes(1)
    expect(w.text()).toContain('The kept tokens were removed from the keyring.')
    // Asked for again, and the button is gone with them.
    expect(field(w, 'CLOUDFLARE_TOKEN').attributes('required')).toBeDefined()
    expect(w.findAll('button').map((b) => b.text())).toEqual(['Continue'])
  })

  it('says why the keyring cannot be used, and never sends for it then', async () => {
    api.runTokens.mockResolvedValue({
      tokens: [{ name: 'CLOUDFLARE_TOKEN', what: 'Cloudflare API token', required: true, given: false, in_keyring: false }],
      keyring: { available: false, why: 'there is no desktop session bus, so no keyring' },
    })
    const w = mount(TokenForm)
    await flushPromises()
    const box = byRole(w, 'checkbox', /keyring/)
    expect((box.element as HTMLInputElement).disabled).toBe(true)
    expect(w.text()).toContain('The keyring cannot be used: there is no desktop session bus, so no keyring.')
    await field(w, 'CLOUDFLARE_TOKEN').setValue('cf')
    await byRole(w, 'form', 'Tokens').trigger('submit')
    expect(w.emitted('submit')).toEqual([[{ CLOUDFLARE_TOKEN: 'cf' }, false]])
  })
})
