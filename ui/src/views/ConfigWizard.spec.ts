import { flushPromises, mount } from '@vue/test-utils'
import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it, vi } from 'vitest'

const api = vi.hoisted(() => ({
  loadConfig: vi.fn(), planShow: vi.fn(), checkConfig: vi.fn(), saveConfig: vi.fn(), getState: vi.fn(), startRun: vi.fn(),
  hostKeys: vi.fn(), trustHostKeys: vi.fn(), preflight: vi.fn(), detectHardware: vi.fn(), planChoices: vi.fn(),
  sourceStatus: vi.fn(), fetchSource: vi.fn(), checkPlan: vi.fn(), machineRequirements: vi.fn(), installAnsible: vi.fn(),
}))
vi.mock('../api', () => ({ api }))

import ConfigWizard from './ConfigWizard.vue'
import { byRole } from '../test-support'

const outline = {
  id: 'demo', title: 'Demo deployment', source: 'built-in', digest: 'x', phases: [],
  flags: [{ name: 'report', value: true, default: true, description: 'Write a report page' }],
  vars: [{ name: 'demo_port', value: '8765', default: '8765', description: 'Port' }],
}

beforeEach(() => {
  setActivePinia(createPinia())
  for (const f of Object.values(api)) f.mockReset()
  api.loadConfig.mockResolvedValue(null)
  api.planShow.mockResolvedValue(outline)
  api.hostKeys.mockResolvedValue([])
  api.preflight.mockResolvedValue([])
  api.detectHardware.mockResolvedValue([])
  api.planChoices.mockResolvedValue([])
  api.machineRequirements.mockResolvedValue([])
})

const FP = 'SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8'
const key = (trust: string, extra: Record<string, unknown> = {}) => ({
  name: 'tk1', address: '10.0.0.11', port: 2222, password: false, reachable: trust !== 'unreachable',
  fingerprint: trust === 'unreachable' ? null : FP, key_type: trust === 'unreachable' ? null : 'ssh-ed25519',
  trust, trusted_fingerprint: null, ...extra,
})

/** The wizard on its hosts page with one SSH host filled in. */
async function onHostsPage() {
  api.checkConfig.mockResolvedValue([])
  const w = mount(ConfigWizard)
  await flushPromises()
  await byRole(w, 'radio', 'Servers over SSH').setValue(true)
  await click(w, 'Next')
  await click(w, 'Add a host')
  await byRole(w, 'textbox', 'Name').setValue('tk1')
  await byRole(w, 'textbox', 'Address').setValue('10.0.0.11')
  await byRole(w, 'spinbutton', 'SSH port').setValue('2222')
  return w
}

const click = async (w: ReturnType<typeof mount>, name: string) => {
  await w.findAll('button').find((b) => b.text() === name)!.trigger('click')
  await flushPromises()
}

describe('ConfigWizard host keys', () => {
  it('shows a new host key and goes on only once the user trusted that fingerprint', async () => {
    api.hostKeys.mockResolvedValue([key('unknown')])
    api.trustHostKeys.mockResolvedValue([key('trusted')])
    const w = await onHostsPage()
    await click(w, 'Next')
    // Still on the hosts page, with the fingerprint to compare.
    expect(byRole(w, 'group', 'Hosts').exists()).toBe(true)
    const table = byRole(w, 'table', 'Host key checks')
    expect(table.text()).toContain(FP)
    expect(table.text()).toContain('not trusted yet')
    expect(api.hostKeys.mock.calls[0]?.[0].hosts[0]).toMatchObject({ name: 'tk1', address: '10.0.0.11', port: 2222 })
    await click(w, 'Trust tk1')
    expect(api.trustHostKeys).toHaveBeenCalledTimes(1)
    expect(api.trustHostKeys.mock.calls[0]?.[1]).toEqual([{ name: 'tk1', fingerprint: FP }])
    expect(byRole(w, 'table', 'Host key checks').text()).toContain('trusted')
    await click(w, 'Next')
    expect(byRole(w, 'group', 'SSH access').exists()).toBe(true)
  })

  it('a changed key stops the wizard with a warning, and offers no way to trust it here', async () => {
    api.hostKeys.mockResolvedValue([key('changed', { trusted_fingerprint: 'SHA256:old' })])
    const w = await onHostsPage()
    await click(w, 'Next')
    expect(byRole(w, 'group', 'Hosts').exists()).toBe(true)
    const alert = w.findAll('[role=alert]').map((a) => a.text()).join(' ')
    expect(alert).toContain('this may be an attack')
    expect(alert).toContain("ssh-keygen -R '[10.0.0.11]:2222'")
    expect(byRole(w, 'table', 'Host key checks').text()).toContain('SHA256:old')
    expect(w.findAll('button').some((b) => b.text().startsWith('Trust'))).toBe(false)
    await click(w, 'Next')
    expect(byRole(w, 'group', 'Hosts').exists()).toBe(true)
  })

  it('a host that does not answer can wait: the wizard goes on and says it is checked again', async () => {
    api.hostKeys.mockResolvedValue([key('unreachable', { problem: 'connection refused' })])
    const w = await onHostsPage()
    await click(w, 'Next')
    expect(byRole(w, 'group', 'SSH access').exists()).toBe(true)
    await click(w, 'Back')
    // A changed address is checked again, not taken from the earlier answer.
    expect(byRole(w, 'table', 'Host key checks').text()).toContain('does not answer')
    await byRole(w, 'textbox', 'Address').setValue('10.0.0.12')
    expect(w.find('table[aria-label="Host key checks"]').exists()).toBe(false)
    api.hostKeys.mockResolvedValue([key('unknown', { address: '10.0.0.12' })])
    await click(w, 'Next')
    expect(api.hostKeys).toHaveBeenCalledTimes(2)
    expect(byRole(w, 'group', 'Hosts').exists()).toBe(true)
  })

  it('a trust the engine refuses (the key changed since it was shown) is shown as it is', async () => {
    api.hostKeys.mockResolvedValue([key('unknown')])
    api.trustHostKeys.mockRejectedValue({ code: 'bad_input', message: 'tk1 (10.0.0.11:2222) now offers SHA256:other instead of the key you accepted' })
    const w = await onHostsPage()
    await click(w, 'Check host keys')
    await click(w, 'Trust tk1')
    expect(w.findAll('[role=alert]').map((a) => a.text()).join(' ')).toContain('instead of the key you accepted')
    await click(w, 'Next')
    expect(byRole(w, 'group', 'Hosts').exists()).toBe(true)
  })
})

describe('ConfigWizard pre-flight', () => {
  const check = (name: string, extra: Record<string, unknown>) => ({
    name, address: '10.0.0.11', port: 22, password: false, reachable: true, trust: 'trusted', fingerprint: FP,
    login: true, sudo: true, problems: [], user: 'deployer', ...extra,
  })

  it('Review runs the pre-flight on the configuration as it is and names each host not ready', async () => {
    api.hostKeys.mockResolvedValue([key('trusted')])
    api.preflight.mockResolvedValue([
      check('tk1', { sudo: false, problems: ['sudo asks for a password or is not allowed (sudo: a password is required)'] }),
    ])
    const w = await onHostsPage()
    await click(w, 'Next')
    await byRole(w, 'textbox', 'SSH user').setValue('deployer')
    await click(w, 'Next')
    await click(w, 'Next')
    expect(api.preflight).toHaveBeenCalledTimes(1)
    expect(api.preflight.mock.calls[0]?.[0]).toMatchObject({ ssh_user: 'deployer', hosts: [{ name: 'tk1', port: 2222 }] })
    const table = byRole(w, 'table', 'Pre-flight results')
    expect(table.text()).toContain('tk1 (10.0.0.11:22)')
    expect(byRole(w, 'list', 'Hosts not ready').text()).toContain('tk1: sudo asks for a password')
    // Fixed on the host: checked again on request, and then ready.
    api.preflight.mockResolvedValue([check('tk1', {})])
    await click(w, 'Check the hosts again')
    expect(w.find('[aria-label="Hosts not ready"]').exists()).toBe(false)
    expect(byRole(w, 'status', 'Every host is ready.').exists()).toBe(true)
  })
})

describe('ConfigWizard capacity', () => {
  const hw = (extra: Record<string, unknown>) => ({
    cpu_cores: 8, memory_mib: 32768, disk_total_gib: 500, disk_free_gib: 200, os: 'Ubuntu 24.04 LTS', arch: 'x86_64', gpus: [], ...extra,
  })

  it('sums what the hosts have and proposes the GPU flag, which stays off until the user turns it on', async () => {
    api.hostKeys.mockResolvedValue([key('trusted')])
    api.planShow.mockResolvedValue({ ...outline, flags: [...outline.flags, { name: 'gpu', value: null, default: false, description: 'GPU operator' }] })
    api.preflight.mockResolvedValue([{
      name: 'tk1', address: '10.0.0.11', port: 2222, password: false, reachable: true, trust: 'trusted', fingerprint: FP,
      login: true, sudo: null, problems: [], user: 'root',
    }])
    api.detectHardware.mockResolvedValue([
      { name: 'tk1', hardware: hw({ gpus: ['NVIDIA GeForce RTX 4090'] }) },
      { name: 'tk2', hardware: hw({ cpu_cores: 4, memory_mib: 16384 }) },
      { name: 'tk3', hardware: hw({ cpu_cores: null, error: 'it does not answer' }) },
    ])
    api.saveConfig.mockResolvedValue(null)
    const w = await onHostsPage()
    await click(w, 'Next')
    await click(w, 'Next')
    await click(w, 'Next')
    const summary = byRole(w, 'region', 'Capacity').text()
    expect(summary).toContain('2 host(s): 12 CPU cores, 48 GiB memory, 400 GiB free disk, NVIDIA GeForce RTX 4090 (tk1)')
    expect(byRole(w, 'table', 'Hardware of each host').text()).toContain('not read: it does not answer')
    // Proposed, not set: saving now keeps it off.
    await click(w, 'Save')
    expect(api.saveConfig.mock.calls[0]?.[0].flags.gpu).not.toBe(true)
    await click(w, 'Turn on gpu')
    await click(w, 'Save')
    expect(api.saveConfig.mock.calls[1]?.[0].flags.gpu).toBe(true)
    expect(w.findAll('button').some((b) => b.text() === 'Turn on gpu')).toBe(false)
  })
})

describe('ConfigWizard required variables and field names', () => {
  const withRoot = (required: boolean) => ({
    ...outline,
    vars: [...outline.vars, { name: 'root', value: null, default: null, description: 'A checkout', required, secret: false }],
  })

  it('a required variable left empty stops the plan page and Review, in words, before any run', async () => {
    api.checkConfig.mockResolvedValue([])
    api.planShow.mockResolvedValue(withRoot(true))
    const w = mount(ConfigWizard)
    await flushPromises()
    await click(w, 'Next')
    await click(w, 'Next')
    const alert = byRole(w, 'alert', 'Problems').text()
    expect(alert).toContain('Variable root')
    expect(alert).toContain('root needs a value')
    expect(alert).not.toContain('--var')
    expect(byRole(w, 'group', 'Plan and options').exists()).toBe(true)
    await byRole(w, 'textbox', 'Variable root').setValue('/srv/checkout')
    expect(w.find('[aria-label=Problems]').exists()).toBe(false)
    await click(w, 'Next')
    await click(w, 'Save')
    expect(api.saveConfig).toHaveBeenCalledTimes(1)
    expect(api.saveConfig.mock.calls[0]?.[0].vars).toEqual({ root: '/srv/checkout' })
  })

  it('a variable only a skipped step uses is not asked for; the flag that enables it is', async () => {
    api.checkConfig.mockResolvedValue([])
    api.planShow.mockImplementation(async (_p: string, flags: Record<string, boolean>) => withRoot(flags.report ?? true))
    const w = mount(ConfigWizard)
    await flushPromises()
    await click(w, 'Next')
    await byRole(w, 'checkbox', 'report — Write a report page').setValue(false)
    await flushPromises()
    await click(w, 'Next')
    await click(w, 'Save')
    expect(api.saveConfig).toHaveBeenCalledTimes(1)
    await click(w, 'Back')
    await byRole(w, 'checkbox', 'report — Write a report page').setValue(true)
    await flushPromises()
    await click(w, 'Next')
    expect(byRole(w, 'alert', 'Problems').text()).toContain('root needs a value')
    expect(api.saveConfig).toHaveBeenCalledTimes(1)
  })

  it("names a host's field by the host and the label, not the engine's path", async () => {
    api.checkConfig.mockResolvedValue([{ field: 'hosts[0].address', message: 'not an IP address or a DNS name' }])
    const w = mount(ConfigWizard)
    await flushPromises()
    await byRole(w, 'radio', 'Servers over SSH').setValue(true)
    await click(w, 'Next')
    await click(w, 'Add a host')
    await byRole(w, 'textbox', 'Name').setValue('tk1')
    await click(w, 'Next')
    const alert = byRole(w, 'alert', 'Problems').text()
    expect(alert).toContain('Host tk1: address')
    expect(alert).not.toContain('hosts[0]')
  })
})

describe('ConfigWizard', () => {
  it('keeps the user on the hosts page and names each bad field', async () => {
    api.checkConfig.mockResolvedValue([
      { field: 'hosts[0].address', message: '`10.0.0.300` is not an IP address or a DNS name' },
      { field: 'ssh_user', message: 'give the SSH user name' },
    ])
    const w = mount(ConfigWizard)
    await flushPromises()
    await byRole(w, 'radio', 'Servers over SSH').setValue(true)
    await click(w, 'Next')
    await click(w, 'Add a host')
    await click(w, 'Next')
    expect(byRole(w, 'alert', 'Problems').text()).toContain('is not an IP address')
    // Problems of later pages wait for their page.
    expect(byRole(w, 'alert', 'Problems').text()).not.toContain('SSH user')
    expect(byRole(w, 'group', 'Hosts').exists()).toBe(true)
  })

  it('drops a problem as soon as the field is fixed, without another click', async () => {
    api.checkConfig.mockImplementation(async (c: { hosts: { address: string }[] }) =>
      c.hosts.some((h) => h.address === '') ? [{ field: 'hosts[0].address', message: '`` is not an IP address or a DNS name' }] : [],
    )
    const w = mount(ConfigWizard)
    await flushPromises()
    await byRole(w, 'radio', 'Servers over SSH').setValue(true)
    await click(w, 'Next')
    await click(w, 'Add a host')
    await click(w, 'Next')
    expect(byRole(w, 'alert', 'Problems').text()).toContain('is not an IP address')
    await byRole(w, 'textbox', 'Address').setValue('10.0.0.11')
    await flushPromises()
    expect(w.find('[aria-label="Problems"]').exists()).toBe(false)
    expect(byRole(w, 'group', 'Hosts').exists()).toBe(true)
  })

  it('shows the plan flags with what they enable, and saves through the engine', async () => {
    api.checkConfig.mockResolvedValue([])
    api.saveConfig.mockResolvedValue(null)
    const w = mount(ConfigWizard)
    await flushPromises()
    await click(w, 'Next')
    expect(w.text()).toContain('report — Write a report page')
    await byRole(w, 'textbox', 'Variable demo_port').setValue('9000')
    await click(w, 'Next')
    expect(byRole(w, 'region', 'Review').text()).toContain('demo_port=9000')
    await click(w, 'Save')
    expect(api.saveConfig).toHaveBeenCalledWith(expect.objectContaining({ target: 'local', plan: 'demo', vars: { demo_port: '9000' } }))
  })

  it('shows a plan that cannot be loaded as an error', async () => {
    api.planShow.mockRejectedValue({ code: 'bad_input', message: 'invalid plan: plan.yaml:3:1: unknown key' })
    const w = mount(ConfigWizard)
    await flushPromises()
    api.checkConfig.mockResolvedValue([])
    await click(w, 'Next')
    expect(byRole(w, 'alert').text()).toContain('plan.yaml:3:1')
  })

  it('asks the thinkube plan for its network, overlay and roles, and sets its flags and domain from them', async () => {
    api.planShow.mockResolvedValue({
      ...outline, id: 'thinkube', title: 'Thinkube platform',
      flags: [
        { name: 'tailscale', value: false, default: false, description: 'The overlay network is Tailscale' },
        { name: 'workers', value: false, default: false, description: 'Join worker nodes' },
      ],
      vars: [],
    })
    api.loadConfig.mockResolvedValue({
      target: 'ssh', hosts: [{ name: 'tk1', address: '10.0.0.11' }, { name: 'tk2', address: '10.0.0.12' }],
      ssh_user: 'thinkube', ssh_auth: 'agent', ssh_key_path: null, azure: null, plan: 'thinkube',
      flags: {}, vars: {}, terraform: null, freshness: { vm_seconds: 300, terraform_seconds: 3600, probe_seconds: 300 },
    })
    // The engine's answer while the network page is empty, then once it is filled.
    api.checkConfig.mockResolvedValue([])
    const w = mount(ConfigWizard)
    await flushPromises()
    for (let i = 0; i < 4; i++) await click(w, 'Next')
    expect(byRole(w, 'group', 'Network, overlay and roles').exists()).toBe(true)
    api.checkConfig.mockResolvedValueOnce([
      { field: 'thinkube.domain_name', message: "give the platform's domain name, e.g. thinkube.example.com" },
      { field: 'hosts', message: 'mark at least one host as control plane (role control); the others may be workers' },
    ])
    await click(w, 'Next')
    const alert = byRole(w, 'alert', 'Problems').text()
    expect(alert).toContain("platform's domain name")
    expect(alert).toContain('control plane')
    await byRole(w, 'textbox', 'Domain name').setValue('thinkube.test')
    await byRole(w, 'combobox', 'Role of tk1').setValue('control')
    await byRole(w, 'combobox', 'Role of tk2').setValue('worker')
    await byRole(w, 'textbox', 'Overlay address of tk1').setValue('192.168.191.11')
    await byRole(w, 'radio', 'Tailscale overlay').setValue(true)
    // Tailscale needs no overlay addresses.
    expect(w.find('[aria-label="Overlay address of tk1"]').exists()).toBe(false)
    await click(w, 'Next')
    const review = byRole(w, 'region', 'Review').text()
    expect(review).toContain('tk1: control, tk2: worker')
    expect(review).toContain('tailscale=true')
    expect(review).toContain('workers=true')
    api.saveConfig.mockResolvedValue(null)
    await click(w, 'Save')
    expect(api.saveConfig).toHaveBeenCalledWith(expect.objectContaining({
      plan: 'thinkube',
      flags: { tailscale: true, workers: true },
      // The plan's domain_name variable (its completion page's addresses) follows the answer.
      vars: { domain_name: 'thinkube.test' },
      thinkube: expect.objectContaining({ domain_name: 'thinkube.test', overlay: 'tailscale' }),
      hosts: [
        expect.objectContaining({ name: 'tk1', role: 'control', overlay_ip: '192.168.191.11' }),
        expect.objectContaining({ name: 'tk2', role: 'worker' }),
      ],
    }))
  })
})

describe('ConfigWizard plan picker', () => {
  const choices = [
    { source: 'demo', builtin: true, id: 'demo', title: 'Demo deployment to this machine', description: 'A small web site on 127.0.0.1.', problem: null },
    { source: 'thinkube', builtin: true, id: 'thinkube', title: 'Thinkube platform', description: null, problem: null },
    { source: '/plans/mine.yaml', builtin: false, id: 'mine', title: 'My plan', description: null, problem: null },
    { source: '/plans/gone.yaml', builtin: false, id: null, title: null, description: null, problem: 'the file is no longer there' },
  ]

  async function onPlanPage() {
    api.planChoices.mockResolvedValue(choices)
    api.checkConfig.mockResolvedValue([])
    const w = mount(ConfigWizard)
    await flushPromises()
    await click(w, 'Next')
    return w
  }

  it('lists every built-in plan and each plan file used here, by title, the chosen one checked', async () => {
    const w = await onPlanPage()
    const group = byRole(w, 'radiogroup', 'Plan')
    expect(group.text()).toContain('Demo deployment to this machine')
    expect(group.text()).toContain('built in (demo)')
    expect(group.text()).toContain('A small web site on 127.0.0.1.')
    expect(group.text()).toContain('Thinkube platform')
    expect(group.text()).toContain('/plans/mine.yaml')
    expect((byRole(w, 'radio', 'Demo deployment to this machine').element as HTMLInputElement).checked).toBe(true)
    expect((byRole(w, 'radio', 'Another plan file').element as HTMLInputElement).checked).toBe(false)
  })

  it('choosing a plan loads its flags and variables, and saves its source', async () => {
    const w = await onPlanPage()
    api.planShow.mockClear()
    await byRole(w, 'radio', 'My plan').setValue(true)
    await flushPromises()
    expect(api.planShow).toHaveBeenCalledWith('/plans/mine.yaml', expect.anything(), expect.anything())
    api.saveConfig.mockResolvedValue(null)
    await click(w, 'Next')
    await click(w, 'Save')
    expect(api.saveConfig).toHaveBeenCalledWith(expect.objectContaining({ plan: '/plans/mine.yaml' }))
  })

  it('a plan file that cannot be used says why and cannot be chosen', async () => {
    const w = await onPlanPage()
    const gone = byRole(w, 'radio', '/plans/gone.yaml')
    expect((gone.element as HTMLInputElement).disabled).toBe(true)
    expect(byRole(w, 'radiogroup', 'Plan').text()).toContain('Cannot be used: the file is no longer there')
  })

  it('another plan file is chosen by its path, and a bad one is named as an error', async () => {
    const w = await onPlanPage()
    api.planShow.mockRejectedValue({ code: 'bad_input', message: 'there is no plan file `/elsewhere/p.yaml` and no built-in plan of that name' })
    await byRole(w, 'textbox', 'Path of the plan file').setValue('/elsewhere/p.yaml')
    await flushPromises()
    expect(api.planShow).toHaveBeenLastCalledWith('/elsewhere/p.yaml', expect.anything(), expect.anything())
    expect((byRole(w, 'radio', 'Another plan file').element as HTMLInputElement).checked).toBe(true)
    expect(byRole(w, 'alert').text()).toContain('no plan file `/elsewhere/p.yaml`')
  })

  it('a saved plan file not in the list is shown as another plan file, with its path', async () => {
    api.loadConfig.mockResolvedValue({
      target: 'local', hosts: [], ssh_user: '', ssh_auth: 'key', ssh_key_path: null, azure: null,
      plan: '/typed/plan.yaml', flags: {}, vars: {}, terraform: null, freshness: { vm_seconds: 300, terraform_seconds: 3600, probe_seconds: 300 },
    })
    const w = await onPlanPage()
    expect((byRole(w, 'radio', 'Another plan file').element as HTMLInputElement).checked).toBe(true)
    expect((byRole(w, 'textbox', 'Path of the plan file').element as HTMLInputElement).value).toBe('/typed/plan.yaml')
  })
})

describe('ConfigWizard review of an upstream plan', () => {
  const PIN = 'bcec007a25b5688aecc27863dc3dc250ed387815'
  const view = (extra: Record<string, unknown> = {}) => ({
    repository: 'https://github.com/thinkube/thinkube', pinned: PIN, dir: '/h/sources/thinkube',
    head: null, own: false, problem: null, ...extra,
  })
  const report = (problems: unknown[]) => ({
    plan: 'thinkube', root: '/h/sources/thinkube', commit: PIN, inventory: 'the inventory this configuration writes',
    playbooks: 33, problems,
  })

  /** The review page of a local deployment of a plan with `upstream:`. */
  async function onReview() {
    api.planShow.mockResolvedValue({ ...outline, id: 'thinkube', upstream: { repository: 'https://github.com/thinkube/thinkube', commit: PIN }, flags: [], vars: [] })
    api.loadConfig.mockResolvedValue({
      target: 'local', hosts: [], ssh_user: '', ssh_auth: 'key', ssh_key_path: null, azure: null, plan: 'mine',
      flags: {}, vars: {}, terraform: null, freshness: { vm_seconds: 300, terraform_seconds: 3600, probe_seconds: 300 },
    })
    api.checkConfig.mockResolvedValue([])
    const w = mount(ConfigWizard)
    await flushPromises()
    for (let i = 0; i < 3 && !w.find('[aria-label="Review"]').exists(); i++) await click(w, 'Next')
    expect(byRole(w, 'region', 'Review').exists()).toBe(true)
    return w
  }

  it('gets a missing checkout at the pin, then runs the plan check and names every problem', async () => {
    api.sourceStatus.mockResolvedValueOnce(view({ problem: 'plan thinkube runs the playbooks of https://github.com/thinkube/thinkube at bcec007a25b5, and there is no checkout of it at /h/sources/thinkube' }))
    const w = await onReview()
    const section = byRole(w, 'region', 'Playbooks')
    expect(section.text()).toContain('not there yet; the plan pins bcec007a25b5')
    expect(byRole(section, 'alert').text()).toContain('there is no checkout of it')
    // No check while there is no checkout: it would only repeat that.
    expect(api.checkPlan).not.toHaveBeenCalled()
    await byRole(section, 'textbox', /From/).setValue('/bundles/thinkube.bundle')
    api.fetchSource.mockResolvedValue({ dir: '/h/sources/thinkube', from: '/bundles/thinkube.bundle', commit: PIN, cloned: true, pinned: null })
    api.sourceStatus.mockResolvedValueOnce(view({ head: PIN }))
    api.checkPlan.mockResolvedValue(report([
      { step: 'k8s', file: '/h/sources/thinkube/ansible/x.yaml', line: 7, message: 'a YAML error' },
      { step: 'gitea', file: '/h/sources/thinkube/ansible/y.yaml', line: null, message: 'playbook y.yaml does not exist' },
    ]))
    await byRole(section, 'button', 'Get the checkout at bcec007a25b5').trigger('click')
    await flushPromises()
    expect(api.fetchSource).toHaveBeenCalledWith('mine', '/bundles/thinkube.bundle')
    const after = byRole(w, 'region', 'Playbooks')
    expect(after.text()).toContain('Cloned from /bundles/thinkube.bundle: at bcec007a25b5.')
    expect(after.text()).toContain('The checkout is ready.')
    expect(byRole(after, 'list', 'Plan check problems').text()).toContain('k8s: /h/sources/thinkube/ansible/x.yaml:7: a YAML error')
    expect(byRole(after, 'list', 'Plan check problems').findAll('li')).toHaveLength(2)
  })

  it('checks the plan at once when the checkout is ready, and says it passed', async () => {
    api.sourceStatus.mockResolvedValue(view({ head: PIN }))
    api.checkPlan.mockResolvedValue(report([]))
    const w = await onReview()
    expect(api.checkPlan).toHaveBeenCalledTimes(1)
    expect(api.checkPlan.mock.calls[0]?.[0]).toMatchObject({ plan: 'mine', target: 'local' })
    expect(byRole(w, 'region', 'Playbooks').text()).toContain('The plan check passed: 33 playbooks load in Ansible')
    expect(api.fetchSource).not.toHaveBeenCalled()
    // Nothing to get: the button is not offered.
    expect(w.findAll('button').map((b) => b.text())).not.toContain('Get the checkout at bcec007a25b5')
  })

  it('shows why a fetch failed, and offers it again', async () => {
    api.sourceStatus.mockResolvedValue(view({ problem: 'there is no checkout' }))
    api.fetchSource.mockRejectedValue({ code: 'bad_input', message: 'could not clone https://github.com/thinkube/thinkube: git says: Could not resolve host: github.com' })
    const w = await onReview()
    await byRole(w, 'button', 'Get the checkout at bcec007a25b5').trigger('click')
    await flushPromises()
    expect(api.fetchSource).toHaveBeenCalledWith('mine', null)
    const alerts = byRole(w, 'region', 'Playbooks').findAll('[role="alert"]').map((a) => a.text())
    expect(alerts).toContain('could not clone https://github.com/thinkube/thinkube: git says: Could not resolve host: github.com')
    expect(byRole(w, 'button', 'Get the checkout at bcec007a25b5').attributes('disabled')).toBeUndefined()
  })
})

describe('ConfigWizard requirements of this machine', () => {
  const req = (name: string, ok: boolean, details: string, fix: string | null = null) => ({ name, ok, details, fix })

  async function onReview() {
    api.loadConfig.mockResolvedValue({
      target: 'local', hosts: [], ssh_user: '', ssh_auth: 'key', ssh_key_path: null, azure: null, plan: 'demo',
      flags: {}, vars: {}, terraform: null, freshness: { vm_seconds: 300, terraform_seconds: 3600, probe_seconds: 300 },
    })
    api.checkConfig.mockResolvedValue([])
    const w = mount(ConfigWizard)
    await flushPromises()
    for (let i = 0; i < 3 && !w.find('[aria-label="Review"]').exists(); i++) await click(w, 'Next')
    return w
  }

  it('names what is missing with what to do, and installs Ansible from the window', async () => {
    api.machineRequirements.mockResolvedValueOnce([
      req('Ansible', false, 'ansible-playbook is not installed', 'Install Ansible and its collections (the button here, or `thinkube-deploy setup`) into /h/venv'),
      req('git', false, 'git is not installed (it is needed for the playbooks\' checkout)', 'Install it (Debian and Ubuntu: `sudo apt-get install git`)'),
      req('Disk space', true, '20.0 GiB free in /h'),
    ])
    const w = await onReview()
    expect(api.machineRequirements).toHaveBeenCalledWith(expect.objectContaining({ plan: 'demo', target: 'local' }))
    const items = byRole(w, 'list', 'Requirements').findAll('li').map((l) => l.text())
    expect(items[0]).toContain('Ansible (missing): ansible-playbook is not installed. Install Ansible and its collections')
    expect(items[1]).toContain('sudo apt-get install git')
    expect(items[2]).toBe('Disk space (ready): 20.0 GiB free in /h')
    api.installAnsible.mockResolvedValue('Installed: /h/venv/bin/ansible-playbook')
    api.machineRequirements.mockResolvedValueOnce([req('Ansible', true, 'ansible-playbook [core 2.16.14] at /h/venv/bin/ansible-playbook'), req('Disk space', true, '19.5 GiB free in /h')])
    await byRole(w, 'button', 'Install Ansible and its collections').trigger('click')
    await flushPromises()
    expect(api.installAnsible).toHaveBeenCalledTimes(1)
    const section = byRole(w, 'region', 'This machine')
    expect(section.text()).toContain('Installed: /h/venv/bin/ansible-playbook')
    expect(section.text()).toContain('This machine has everything the plan needs.')
    // Nothing left to install: the button is gone.
    expect(section.findAll('button')).toHaveLength(0)
  })

  it('says why an install failed', async () => {
    api.machineRequirements.mockResolvedValue([req('Ansible', false, 'ansible-playbook is not installed', 'Install Ansible')])
    api.installAnsible.mockRejectedValue({ code: 'ansible_missing', message: 'could not install ansible-core and the ansible package with /h/venv/bin/pip: no network; check that PyPI is reachable' })
    const w = await onReview()
    await byRole(w, 'button', 'Install Ansible and its collections').trigger('click')
    await flushPromises()
    expect(byRole(byRole(w, 'region', 'This machine'), 'alert').text()).toContain('check that PyPI is reachable')
  })
})

describe('ConfigWizard Azure sign-in', () => {
  it('saves the cloud, the tenant and a user-assigned identity, and leaves the public cloud unsaid', async () => {
    api.checkConfig.mockResolvedValue([])
    api.saveConfig.mockResolvedValue(null)
    api.loadConfig.mockResolvedValue({
      target: 'azure', hosts: [{ name: 'vm-1', address: '10.0.0.4' }], ssh_user: 'azureuser', ssh_auth: 'agent', ssh_key_path: null,
      azure: { subscription_id: '0b1c2d3e-0000-4000-8000-00000000abcd', resource_group: 'rg', credential: 'cli' },
      plan: 'demo', flags: {}, vars: {}, terraform: null, freshness: { vm_seconds: 300, terraform_seconds: 3600, probe_seconds: 300 },
    })
    const w = mount(ConfigWizard)
    await flushPromises()
    for (let i = 0; i < 2; i++) await click(w, 'Next')
    await byRole(w, 'combobox', /Azure sign-in/).setValue('managed_identity')
    await byRole(w, 'combobox', /Azure cloud/).setValue('usgovernment')
    await byRole(w, 'textbox', /Tenant id/).setValue('72f988bf-86f1-41af-91ab-2d7cd011db47')
    await byRole(w, 'textbox', /Identity client id/).setValue('00000000-0000-0000-0000-000000000002')
    for (let i = 0; i < 2; i++) await click(w, 'Next')
    await click(w, 'Save')
    expect(api.saveConfig.mock.calls[0]?.[0].azure).toEqual({
      subscription_id: '0b1c2d3e-0000-4000-8000-00000000abcd', resource_group: 'rg', credential: 'managed_identity',
      cloud: 'usgovernment', tenant_id: '72f988bf-86f1-41af-91ab-2d7cd011db47', client_id: '00000000-0000-0000-0000-000000000002',
    })
    // Back to the public cloud: not written at all (the default).
    api.saveConfig.mockClear()
    for (let i = 0; i < 2; i++) await click(w, 'Back')
    await byRole(w, 'combobox', /Azure cloud/).setValue('public')
    for (let i = 0; i < 2; i++) await click(w, 'Next')
    await click(w, 'Save')
    expect(api.saveConfig.mock.calls[0]?.[0].azure.cloud).toBeNull()
  })
})
