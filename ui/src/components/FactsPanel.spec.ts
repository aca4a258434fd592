import { flushPromises, mount } from '@vue/test-utils'
import { beforeEach, describe, expect, it, vi } from 'vitest'

const api = vi.hoisted(() => ({ facts: vi.fn(), validate: vi.fn() }))
vi.mock('../api', () => ({ api }))

import FactsPanel from './FactsPanel.vue'

const fact = (key: string, stale: boolean, age: number) => ({
  key, source: 'terraform', value: { value: '10.0.0.4' }, fetched_at: '2026-11-22T10:00:00Z',
  age_seconds: age, ttl_seconds: 3600, stale, stale_reason: stale ? 'terraform.tfstate changed since it was read' : null,
  checksum: 'x',
})

beforeEach(() => {
  api.facts.mockReset()
  api.validate.mockReset()
})

describe('FactsPanel', () => {
  it('shows each fact with its age and why it is stale, never asking the network to show them', async () => {
    api.facts.mockResolvedValue([fact('terraform/output/ip', false, 30), fact('terraform/state', true, 7300)])
    const w = mount(FactsPanel)
    await flushPromises()
    expect(api.facts).toHaveBeenCalledWith(false)
    expect(w.find('[data-fact="terraform/output/ip"]').text()).toContain('30 s')
    expect(w.find('[data-fact="terraform/state"]').text()).toContain('2 h')
    expect(w.find('[data-fact="terraform/state"]').text()).toContain('stale: terraform.tfstate changed')
  })

  it('refreshes on request and lists mismatches with the step they affect', async () => {
    api.facts.mockResolvedValue([])
    const w = mount(FactsPanel)
    await flushPromises()
    expect(w.text()).toContain('No facts are cached')
    api.facts.mockResolvedValue([fact('host/node', false, 0)])
    await w.findAll('button').find((b) => b.text() === 'Refresh facts')!.trigger('click')
    await flushPromises()
    expect(api.facts).toHaveBeenLastCalledWith(true)
    api.validate.mockResolvedValue([{
      kind: 'host_unreachable', subject: 'node', detail: 'node (10.0.0.5:22) does not answer',
      affects_step: 'install', what_to_do: 'start the host',
    }])
    await w.findAll('button').find((b) => b.text() === 'Check against reality')!.trigger('click')
    await flushPromises()
    expect(w.find('[aria-label=Mismatches]').text()).toContain('affects step install and later')
  })

  it('shows a refresh that failed as an error', async () => {
    api.facts.mockRejectedValue({ code: 'bad_input', message: 'the Terraform state /x has format version 3, not 4' })
    const w = mount(FactsPanel)
    await flushPromises()
    expect(w.find('[role=alert]').text()).toContain('format version 3')
  })
})
