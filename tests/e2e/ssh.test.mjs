// Servers over SSH from the window: two real sshd on 127.0.0.1 (each its own port and
// host key, root let in with a client key the test made). The hosts page shows each
// host's fingerprint, the same `ssh-keygen -l` prints for the server's key, and does
// not go on until the user trusted them; the review page shows the pre-flight (each
// answers, key trusted, login); the deployment then runs its playbook on both over SSH
// with strict host key checking against the installer's own known_hosts.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, test } from 'node:test'
import {
  clickButton, freePort, launch, newWorld, screenshot, stopDisplay, waitForPage, waitForText, writePlan,
} from './harness.mjs'

after(stopDisplay)

const SSHD = '/usr/sbin/sshd'
const servers = new Set()
after(() => {
  for (const s of servers) s.kill('SIGKILL')
})

function keygen(path) {
  const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'thinkube-e2e', '-f', path])
  assert.equal(r.status, 0, `ssh-keygen ${path}`)
}

function fingerprintOf(publicKey) {
  const out = spawnSync('ssh-keygen', ['-lf', publicKey], { encoding: 'utf8' }).stdout
  return out.split(/\s+/).find((w) => w.startsWith('SHA256:'))
}

/** Starts sshd on `port`; resolves once it says it listens. */
function startSshd(dir, name, port) {
  const config = join(dir, `sshd_config-${name}`)
  writeFileSync(config, [
    'ListenAddress 127.0.0.1', `Port ${port}`, `HostKey ${join(dir, `hostkey-${name}`)}`, 'PidFile none',
    'UsePAM no', 'StrictModes no', 'PermitRootLogin prohibit-password', 'PasswordAuthentication no',
    `AuthorizedKeysFile ${join(dir, 'client.pub')}`, '',
  ].join('\n'))
  spawnSync('mkdir', ['-p', '/run/sshd'])
  const child = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] })
  servers.add(child)
  return new Promise((ok, fail) => {
    const lines = createInterface({ input: child.stderr })
    lines.on('line', (line) => {
      if (line.includes('Server listening on')) ok(child)
      if (line.includes('fatal')) fail(new Error(`sshd: ${line}`))
    })
    child.once('exit', (code) => fail(new Error(`sshd exited with ${code}`)))
  })
}

const skip = process.getuid?.() !== 0 || !existsSync(SSHD)
  ? `needs root and ${SSHD} (scripts/ensure-system installs openssh-server; CI runs as root)`
  : false

test('host keys are trusted from the window, then a deployment runs over SSH on both hosts', { skip }, async () => {
  const world = newWorld('ssh')
  const dir = world.root
  keygen(join(dir, 'client'))
  keygen(join(dir, 'hostkey-one'))
  keygen(join(dir, 'hostkey-two'))
  const [portOne, portTwo] = [await freePort(), await freePort()]
  await startSshd(dir, 'one', portOne)
  await startSshd(dir, 'two', portTwo)
  const expected = { one: fingerprintOf(join(dir, 'hostkey-one.pub')), two: fingerprintOf(join(dir, 'hostkey-two.pub')) }
  const plan = writePlan(world, 'over-ssh', {
    'plan.yaml': `id: over-ssh
title: A playbook on every host over SSH
phases:
  - id: p
    title: Only phase
    steps:
      - id: touch
        title: Touch a file on each host
        playbook: touch.yaml
`,
    'touch.yaml': `- hosts: all
  gather_facts: false
  vars:
    ansible_python_interpreter: /usr/bin/python3
  tasks:
    - ansible.builtin.command: "touch ${dir}/ran-on-{{ inventory_hostname }}"
`,
  })
  const { browser, close } = await launch(world, ['--plan', plan])
  try {
    await waitForText(browser, 'main', 'No deployment yet')
    await clickButton(browser, 'Configure and deploy')
    await (await browser.$('input[type=radio][value=ssh]')).click()
    await clickButton(browser, 'Next')
    await clickButton(browser, 'Add a host')
    await clickButton(browser, 'Add a host')
    const inputs = await browser.$$('.host-row input')
    await inputs[0].setValue('one')
    await inputs[1].setValue('127.0.0.1')
    await inputs[2].setValue(String(portOne))
    await inputs[3].setValue('two')
    await inputs[4].setValue('127.0.0.1')
    await inputs[5].setValue(String(portTwo))
    // Next reads both keys and stays: each must be trusted first.
    await clickButton(browser, 'Next')
    const page = await waitForPage(browser, "Trust each host's key")
    assert.ok(page.includes(expected.one) && page.includes(expected.two), `the fingerprints are not shown: ${page}`)
    await screenshot(browser, 'hosts-keys')
    await clickButton(browser, 'Next')
    await waitForPage(browser, "Trust each host's key")
    await clickButton(browser, 'Trust one')
    await waitForPage(browser, (p) => !p.includes('Trust one'))
    await clickButton(browser, 'Trust two')
    await waitForPage(browser, (p) => !p.includes('not trusted yet'))
    await clickButton(browser, 'Next')
    await (await browser.$('label*=SSH user')).$('input').setValue('root')
    await (await browser.$('label*=Key file')).$('input').setValue(join(dir, 'client'))
    await clickButton(browser, 'Next')
    await clickButton(browser, 'Next')
    await waitForText(browser, 'section.review', 'root with key')
    // The pre-flight of what every run checks first, on the review page.
    const review = await waitForPage(browser, 'Every host is ready.', 60_000)
    assert.ok(review.includes(`one (127.0.0.1:${portOne})`) && review.includes('not needed (root)'), review)
    // Then what they have, read over SSH: both are this machine.
    const cores = Number(spawnSync('nproc', { encoding: 'utf8' }).stdout.trim())
    await waitForPage(browser, `2 host(s): ${2 * cores} CPU cores`, 60_000)
    await screenshot(browser, 'review-preflight')
    await clickButton(browser, 'Save and deploy')
    await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 180_000)
  } finally {
    await close()
  }
  assert.ok(existsSync(join(dir, 'ran-on-one')) && existsSync(join(dir, 'ran-on-two')), 'the playbook did not run on both hosts')
  const known = readFileSync(join(world.home, 'known_hosts'), 'utf8')
  assert.ok(known.includes(`[127.0.0.1]:${portOne} ssh-ed25519 `), known)
  assert.ok(known.includes(`[127.0.0.1]:${portTwo} ssh-ed25519 `), known)
})
