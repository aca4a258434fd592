import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { snapshot, step } from '../test-support'

const api = vi.hoisted(() => ({ facts: vi.fn(), validate: vi.fn() }))
vi.mock('../api', () => ({ api }))

import FactsPanel from './FactsPanel.vue'
import { useInstallerStore } from '../stores/installer'

const fact = (key: string, stale: boolean, age: number) => ({
  key, source: 'terraform', value: { value: '10.0.0.4' }, fetched_at: '2026-11-22T10:00:00Z',
  age_seconds: age, ttl_seconds: 3600, stale, stale_reason: stale ? 'terraform.tfstate changed since it was read' : null,
  checksum: 'x',
})

const answer = (facts: unknown[], refreshed: string[] | null = null) => ({ facts, refreshed })

beforeEach(() => {
  setActivePinia(createPinia())
  api.facts.mockReset()
  api.validate.mockReset()
})
afterEach(() => {
  vi.useRealTimers()
})

describe('FactsPanel', () => {
  it('shows each fact with its age and why it is stale, never asking the network to show them', async () => {
    api.facts.mockResolvedValue(answer([fact('terraform/output/ip', false, 30), fact('terraform/state', true, 7300)]))
    const w = mount(FactsPanel)
    await flushPromises()
    expect(api.facts).toHaveBeenCalledWith(false)
    expect(w.find('[data-fact="terraform/output/ip"]').text()).toContain('30 s')
    expect(w.find('[data-fact="terraform/state"]').text()).toContain('2 h')
    expect(w.find('[data-fact="terraform/state"]').text()).toContain('stale: terraform.tfstate changed')
  })

  it('refreshes on request and lists mismatches with the step they affect', async () => {
    useInstallerStore().snapshot = snapshot([step('install', 'completed', { title: 'Install Kubernetes' })])
    api.facts.mockResolvedValue(answer([]))
    const w = mount(FactsPanel)
    await flushPromises()
    expect(w.text()).toContain('No facts are cached')
    api.facts.mockResolvedValue(answer([fact('host/node', false, 0)]))
    await w.findAll('button').find((b) => b.text() === 'Refresh facts')!.trigger('click')
    await flushPromises()
    expect(api.facts).toHaveBeenLastCalledWith(true)
    api.validate.mockResolvedValue({
      checked: ['the SSH port of node (10.0.0.5:22)'],
      mismatches: [{
        kind: 'host_unreachable', subject: 'node', detail: 'node (10.0.0.5:22) does not answer',
        affects_step: 'install', what_to_do: 'start the host; if it was rebuilt, `validate --reset-affected` and resume',
      }],
    })
    await w.findAll('button').find((b) => b.text() === 'Check against reality')!.trigger('click')
    await flushPromises()
    expect(w.find('[data-testid=checked]').text()).toBe('1 mismatch. Checked the SSH port of node (10.0.0.5:22).')
    const item = w.find('[aria-label=Mismatches]')
    expect(item.text()).toContain('affects step “Install Kubernetes” and later')
    expect(item.find('code').text()).toBe('validate --reset-affected')
    expect(item.text()).not.toContain('`')
  })

  // "The state matches reality" was said for a local target where nothing was checked.
  it('says what a check compared, and that there was nothing to check when nothing was', async () => {
    api.facts.mockResolvedValue(answer([]))
    const w = mount(FactsPanel)
    await flushPromises()
    const check = () => w.findAll('button').find((b) => b.text() === 'Check against reality')!.trigger('click')
    api.validate.mockResolvedValue({ checked: [], mismatches: [] })
    await check()
    await flushPromises()
    expect(w.find('[data-testid=checked]').text()).toContain('Nothing to check')
    expect(w.text()).not.toContain('matches reality')
    api.validate.mockResolvedValue({ checked: ['the Terraform state /t/terraform.tfstate', 'the SSH port of n1 (10.0.0.4:22)'], mismatches: [] })
    await check()
    await flushPromises()
    expect(w.find('[data-testid=checked]').text()).toBe(
      'The state matches reality. Checked the Terraform state /t/terraform.tfstate, the SSH port of n1 (10.0.0.4:22).',
    )
    api.validate.mockResolvedValue(null)
    await check()
    await flushPromises()
    expect(w.find('[data-testid=checked]').text()).toBe('There is no deployment to check yet.')
  })

  // "Refresh facts" with no source configured gave no feedback at all.
  it('says what a refresh asked, and that there was nothing to ask', async () => {
    api.facts.mockResolvedValue(answer([]))
    const w = mount(FactsPanel)
    await flushPromises()
    expect(w.find('[data-testid=refreshed]').exists()).toBe(false)
    const refresh = () => w.findAll('button').find((b) => b.text() === 'Refresh facts')!.trigger('click')
    api.facts.mockResolvedValue(answer([], []))
    await refresh()
    await flushPromises()
    expect(w.find('[data-testid=refreshed]').text()).toContain('Nothing to ask')
    api.facts.mockResolvedValue(answer([fact('host/node', false, 0)], ['host node (10.0.0.5:22): answers']))
    await refresh()
    await flushPromises()
    expect(w.find('[data-testid=refreshed]').text()).toBe('Refreshed:host node (10.0.0.5:22): answers')
  })

  it('shows a refresh that failed as an error', async () => {
    api.facts.mockRejectedValue({ code: 'bad_input', message: 'the Terraform state /x has format version 3, not 4' })
    const w = mount(FactsPanel)
    await flushPromises()
    expect(w.find('[role=alert]').text()).toContain('format version 3')
  })

  it('says what each fact means in words, not JSON', async () => {
    api.facts.mockResolvedValue(answer([
      { ...fact('host/up', false, 5), source: 'inventory', value: { address: '10.0.0.5', port: 22, reachable: true, error: null } },
      { ...fact('host/down', false, 5), source: 'inventory', value: { address: '10.0.0.6', port: 2222, reachable: false, error: 'connection refused' } },
      { ...fact('hardware/up', false, 5), source: 'inventory', value: { cpu_cores: 16, memory_mib: 65536, disk_total_gib: 900, disk_free_gib: 700, os: 'Ubuntu 24.04 LTS', arch: 'x86_64', gpus: ['NVIDIA RTX A4000'] } },
      { ...fact('hardware/down', false, 5), source: 'inventory', value: { cpu_cores: null, memory_mib: null, disk_total_gib: null, disk_free_gib: null, os: null, arch: null, gpus: [], error: 'it does not answer' } },
    ]))
    const w = mount(FactsPanel)
    await flushPromises()
    expect(w.find('[data-fact="host/up"]').text()).toContain('answers on 10.0.0.5:22')
    expect(w.find('[data-fact="host/down"]').text()).toContain('does not answer on 10.0.0.6:2222 (connection refused)')
    expect(w.find('[data-fact="hardware/up"]').text()).toContain('16 CPU cores, 64 GiB memory, 700 of 900 GiB disk free, Ubuntu 24.04 LTS (x86_64), NVIDIA RTX A4000')
    expect(w.find('[data-fact="hardware/down"]').text()).toContain('not read: it does not answer')
    expect(w.text()).not.toContain('{')
  })

  it("ages tick while the panel is open, and a fact past its trust turns stale without a reload", async () => {
    vi.useFakeTimers()
    api.facts.mockResolvedValue(answer([{ ...fact('host/node', false, 100), ttl_seconds: 110, value: { address: 'a', port: 22, reachable: true } }]))
    const w = mount(FactsPanel)
    await flushPromises()
    const row = () => w.find('[data-fact="host/node"]').text()
    expect(row()).toContain('100 s')
    expect(row()).toContain('fresh')
    await vi.advanceTimersByTimeAsync(15_000)
    expect(row()).toContain('115 s')
    expect(row()).toContain('stale: older than 110 s')
    expect(api.facts).toHaveBeenCalledTimes(1)
  })

  it('shows a VM with its addresses and DNS name, and how the refresh asked Azure', async () => {
    const azure = (key: string, value: unknown) => ({ ...fact(key, false, 5), source: 'azure', value })
    api.facts.mockResolvedValue(answer([
      azure('vm/ctl', { power_state: 'running', provisioning_state: 'succeeded', private_ips: ['10.0.0.4'], public_ips: ['20.1.2.3'], fqdns: ['ctl.westeurope.cloudapp.azure.com'] }),
      azure('azure/refresh', { vms: 1, resource_group: 'rg', arm_requests: 1, via: 'resource_graph' }),
    ]))
    const w = mount(FactsPanel)
    await flushPromises()
    expect(w.find('[data-fact="vm/ctl"]').text()).toContain('running, 10.0.0.4, 20.1.2.3, ctl.westeurope.cloudapp.azure.com')
    expect(w.find('[data-fact="azure/refresh"]').text()).toContain('1 VM(s) in rg (1 ARM requests, Resource Graph)')
  })
})
