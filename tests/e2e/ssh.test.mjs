// Servers over SSH from the window: two real sshd on 127.0.0.1 (each its own port and
// host key, root let in with a client key the test made). The hosts page shows each
// host's fingerprint, the same `ssh-keygen -l` prints for the server's key, and does
// not go on until the user trusted them; the review page shows the pre-flight (each
// answers, key trusted, login); the deployment then runs its playbook on both over SSH
// with strict host key checking against the installer's own known_hosts.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, test } from 'node:test'
import {
  assertInNoFile, clickButton, freePort, until, launch, newWorld, screenshot, stopDisplay, waitForPage, waitForText, writePlan,
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

/**
 * Starts sshd on `port`; resolves once it says it listens. By default it lets root in
 * with the test's client key; `auth` replaces those lines.
 */
function startSshd(dir, name, port, auth = [
  'PermitRootLogin prohibit-password', 'PasswordAuthentication no', `AuthorizedKeysFile ${join(dir, 'client.pub')}`,
]) {
  const config = join(dir, `sshd_config-${name}`)
  writeFileSync(config, [
    'ListenAddress 127.0.0.1', `Port ${port}`, `HostKey ${join(dir, `hostkey-${name}`)}`, 'PidFile none',
    'UsePAM no', 'StrictModes no', ...auth, '',
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

const onPath = (tool) => (process.env.PATH ?? '').split(':').some((d) => existsSync(join(d, tool)))
const skipPassword = skip || (['sshpass', 'useradd', 'chpasswd', 'userdel'].find((t) => !onPath(t))
  ? 'needs sshpass, useradd, chpasswd and userdel (scripts/ensure-system installs them)'
  : false)

/** Every process's command line that holds `text`, as "pid: command line". */
function commandLinesHolding(text) {
  const found = []
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    let line
    try {
      line = readFileSync(`/proc/${pid}/cmdline`)
    } catch {
      continue // it ended meanwhile
    }
    if (line.includes(text)) found.push(`${pid}: ${line.toString().replaceAll('\0', ' ')}`)
  }
  return found
}

test('a password login from the window: the deployment runs as that user, and the password is in no file and no command line', { skip: skipPassword }, async () => {
  const world = newWorld('sshpw')
  const dir = world.root
  keygen(join(dir, 'hostkey-pw'))
  const port = await freePort()
  const user = `tke${port}`
  const password = `pw-${port}-${process.pid}-e2e`
  spawnSync('userdel', ['-r', user])
  assert.equal(spawnSync('useradd', ['-m', '-s', '/bin/sh', user]).status, 0, `useradd ${user}`)
  const shared = mkdtempSync('/tmp/thinkube-e2e-sshpw-shared-')
  try {
    assert.equal(spawnSync('chpasswd', { input: `${user}:${password}\n` }).status, 0, 'chpasswd')
    // The playbook runs as the user: a folder it may write in, where it says it started
    // and waits for the test's go.
    chmodSync(shared, 0o1777)
    await startSshd(dir, 'pw', port, [
      'PermitRootLogin no', 'PasswordAuthentication yes', 'KbdInteractiveAuthentication no', `AllowUsers ${user}`,
    ])
    const expected = fingerprintOf(join(dir, 'hostkey-pw.pub'))
    const plan = writePlan(world, 'with-password', {
      'plan.yaml': `id: with-password
title: A playbook over SSH with a password login
phases:
  - id: p
    title: Only phase
    steps:
      - id: wait
        title: Start, wait for the go, finish
        playbook: wait.yaml
`,
      'wait.yaml': `- hosts: all
  gather_facts: false
  vars:
    ansible_python_interpreter: /usr/bin/python3
  tasks:
    - ansible.builtin.command: "touch ${shared}/started"
    - ansible.builtin.wait_for:
        path: "${shared}/go"
        timeout: 240
    - ansible.builtin.command: "touch ${shared}/finished"
`,
    })
    const { browser, close } = await launch(world, ['--plan', plan])
    try {
      await waitForText(browser, 'main', 'No deployment yet')
      await clickButton(browser, 'Configure and deploy')
      await (await browser.$('input[type=radio][value=ssh]')).click()
      await clickButton(browser, 'Next')
      await clickButton(browser, 'Add a host')
      const inputs = await browser.$$('.host-row input')
      await inputs[0].setValue('server')
      await inputs[1].setValue('127.0.0.1')
      await inputs[2].setValue(String(port))
      await clickButton(browser, 'Next')
      const keys = await waitForPage(browser, "Trust each host's key")
      assert.ok(keys.includes(expected), `the fingerprint is not shown: ${keys}`)
      await clickButton(browser, 'Trust server')
      await waitForPage(browser, (p) => !p.includes('not trusted yet'))
      await clickButton(browser, 'Next')
      await (await browser.$('label*=SSH user')).$('input').setValue(user)
      await (await browser.$('input[type=radio][value=password]')).click()
      await clickButton(browser, 'Next')
      await clickButton(browser, 'Next')
      await waitForText(browser, 'section.review', `${user} with password`)
      // No password yet: the review says when the login is checked.
      await waitForPage(browser, 'the password is asked for when the deployment starts', 60_000)
      await clickButton(browser, 'Save and deploy')
      const field = await browser.$('input[type=password]')
      await field.waitForDisplayed({ timeout: 30_000 })
      await field.setValue(password)
      await clickButton(browser, 'Continue')
      // The step runs over SSH, logged in with the password: look at every command line now.
      await until('the playbook to start on the server', () => existsSync(join(shared, 'started')), 120_000)
      const holding = commandLinesHolding(password)
      writeFileSync(join(shared, 'go'), '')
      assert.deepEqual(holding, [], 'the password is in a command line')
      await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 180_000)
      const page = await (await browser.$('body')).getText()
      assert.ok(!page.includes(password), 'the password is on the page')
      const storage = await browser.execute(() => JSON.stringify({ ...localStorage }))
      assert.ok(!storage.includes(password), 'the password is in localStorage')
    } finally {
      await close()
    }
    const uid = Number(spawnSync('id', ['-u', user], { encoding: 'utf8' }).stdout.trim())
    assert.equal(statSync(join(shared, 'finished')).uid, uid, `the playbook did not run as ${user}`)
    const { searched } = assertInNoFile(world, [password], 'the SSH password')
    assert.ok(searched > 10, `only ${searched} files searched`)
  } finally {
    rmSync(shared, { recursive: true, force: true })
    // Its SSH sessions (Ansible keeps its connections open a while) end with it.
    spawnSync('pkill', ['-KILL', '-u', user])
    spawnSync('userdel', ['-r', user])
  }
})
