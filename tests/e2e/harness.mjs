// Drives the real built app through tauri-driver (WebKitWebDriver) under Xvfb.
// Each test gets its own installer home, its own XDG folders (so the WebView's
// localStorage is its own) and its own free ports. One session at a time: WebKitGTK
// allows a single automation context (tests run with --test-concurrency=1).
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { remote } from 'webdriverio'

const here = dirname(fileURLToPath(import.meta.url))
export const repo = resolve(here, '../..')
export const app = process.env.THINKUBE_APP ?? join(repo, 'target/debug/thinkube-installer')
export const artifacts = join(repo, 'target/e2e-artifacts')
const WAIT = 60_000

// The demo and retry tests run real Ansible. scripts/test-all sets this; when it is
// unset (a test run by hand), install the pinned ansible-core once, as test-all does.
if (!process.env.THINKUBE_ANSIBLE_PLAYBOOK) {
  const r = spawnSync(join(repo, 'scripts/ensure-ansible'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] })
  if (r.status !== 0) throw new Error(`scripts/ensure-ansible failed (exit ${r.status})`)
  process.env.THINKUBE_ANSIBLE_PLAYBOOK = r.stdout.trim()
}

export function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer()
    s.once('error', fail)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => ok(port))
    })
  })
}

function untilListening(port, child) {
  return new Promise((ok, fail) => {
    const deadline = Date.now() + WAIT
    const attempt = () => {
      if (child.exitCode !== null) return fail(new Error(`tauri-driver exited with ${child.exitCode}`))
      const sock = connect(port, '127.0.0.1')
      sock.once('connect', () => {
        sock.destroy()
        ok()
      })
      sock.once('error', () => {
        sock.destroy()
        if (Date.now() > deadline) fail(new Error(`nothing listens on ${port}`))
        else setTimeout(attempt, 50)
      })
    }
    attempt()
  })
}

/** A display: the one set, else a private Xvfb (started once per test file or bench). */
let xvfb = null
export async function display() {
  if (process.env.DISPLAY) return process.env.DISPLAY
  if (xvfb) return xvfb.display
  const child = spawn('Xvfb', ['-displayfd', '3', '-screen', '0', '1280x900x24', '-nolisten', 'tcp'], {
    stdio: ['ignore', 'ignore', 'inherit', 'pipe'],
  })
  const number = await new Promise((ok, fail) => {
    let text = ''
    child.stdio[3].on('data', (d) => {
      text += d
      if (text.includes('\n')) ok(text.trim())
    })
    child.once('exit', (c) => fail(new Error(`Xvfb exited with ${c}`)))
  })
  xvfb = { child, display: `:${number}` }
  return xvfb.display
}

/** Drivers started and not yet ended (each leads its own process group). */
const live = new Set()

/** Ends what a test file started: drivers and apps a failed test left, then Xvfb. */
export async function stopDisplay() {
  for (const driver of live) await endGroup(driver)
  xvfb?.child.kill()
  xvfb = null
}

/** Fresh folders: an installer home and XDG folders of the test's own. */
export function newWorld(name) {
  const root = mkdtempSync(join(tmpdir(), `thinkube-e2e-${name}-`))
  const dirs = {
    root,
    home: join(root, 'installer-home'),
    xdgData: join(root, 'xdg-data'),
    xdgConfig: join(root, 'xdg-config'),
    xdgCache: join(root, 'xdg-cache'),
  }
  for (const d of Object.values(dirs)) mkdirSync(d, { recursive: true })
  return dirs
}

export function worldEnv(world) {
  return {
    ...process.env,
    THINKUBE_INSTALLER_HOME: world.home,
    XDG_DATA_HOME: world.xdgData,
    XDG_CONFIG_HOME: world.xdgConfig,
    XDG_CACHE_HOME: world.xdgCache,
  }
}

/** The live (not zombie) processes of process group `pgid`, read from /proc. */
function groupMembers(pgid) {
  const members = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // it ended while we looked
    }
    // pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    if (Number(pgrp) === pgid && state !== 'Z') members.push(Number(entry))
  }
  return members
}

function signalGroup(pgid, signal) {
  try {
    process.kill(-pgid, signal)
  } catch {
    // Nothing left to signal.
  }
}

/**
 * Ends tauri-driver and waits until nothing of its process group is alive
 * (WebKitWebDriver, and the app with its WebKit processes), so that the app has
 * released its instance lock before the next launch in the same world. The app is
 * left to finish on its own (it flushes localStorage as it exits); only what is
 * still alive after 10 s gets SIGTERM, and after 20 s SIGKILL.
 */
async function endGroup(driver) {
  const pgid = driver.pid
  driver.kill('SIGTERM')
  const started = Date.now()
  let signalled = null
  while (groupMembers(pgid).length > 0) {
    const waited = Date.now() - started
    if (waited > 20_000 && signalled !== 'SIGKILL') signalGroup(pgid, (signalled = 'SIGKILL'))
    else if (waited > 10_000 && signalled === null) signalGroup(pgid, (signalled = 'SIGTERM'))
    await new Promise((ok) => setTimeout(ok, 20))
  }
  live.delete(driver)
}

/**
 * Starts the app in `world` with launch `args` (and `extraEnv` in its environment);
 * returns the WebdriverIO browser.
 */
export async function launch(world, args = [], extraEnv = {}) {
  const env = { ...worldEnv(world), ...extraEnv, DISPLAY: await display() }
  const port = await freePort()
  const nativePort = await freePort()
  // Its own process group: WebKitWebDriver and the app it starts join it, and `close`
  // waits for the whole group to be gone.
  const driver = spawn('tauri-driver', ['--port', String(port), '--native-port', String(nativePort)], {
    env,
    stdio: ['ignore', 'inherit', 'inherit'],
    detached: true,
  })
  live.add(driver)
  let browser
  try {
    // tauri-driver listens at once but forwards to WebKitWebDriver, which it starts:
    // both must listen before the session request.
    await untilListening(port, driver)
    await untilListening(nativePort, driver)
    browser = await remote({
      hostname: '127.0.0.1',
      port,
      logLevel: 'error',
      connectionRetryTimeout: WAIT,
      // A retried new-session request would start a second app, which the first one's
      // instance lock turns away: one attempt, with the whole WAIT to answer.
      connectionRetryCount: 0,
      capabilities: {
        'wdio:enforceWebDriverClassic': true,
        'tauri:options': { application: app, args },
      },
    })
  } catch (e) {
    await endGroup(driver)
    throw e
  }
  browser.setTimeout({ implicit: 0 })
  const close = async () => {
    try {
      await browser.deleteSession()
    } catch {
      // The app may already be gone (a test killed it).
    }
    await endGroup(driver)
  }
  return { browser, close, driver }
}

/** Waits for an element matching `selector` whose text includes `text`. */
export async function waitForText(browser, selector, text, timeout = WAIT) {
  let last = null
  try {
    await browser.waitUntil(
      async () => {
        const els = await browser.$$(selector)
        for (const el of els) {
          try {
            last = await el.getText()
          } catch {
            // Re-rendered between finding and reading it (WebKitWebDriver: "non-Element
            // argument"): look again on the next poll.
            continue
          }
          if (last.includes(text)) return true
        }
        return false
      },
      { timeout, interval: 100 },
    )
  } catch (e) {
    // Say what the window showed instead, and keep a picture of it for CI.
    const name = `failure-${Date.now()}`
    let page = '(the page could not be read)'
    try {
      page = await (await browser.$('body')).getText()
      await screenshot(browser, name)
    } catch {
      // The window is gone; the message says so.
    }
    throw new Error(
      `no ${selector} with "${text}" after ${timeout} ms (last ${selector}: ${JSON.stringify(last)}); ` +
        `the page showed: ${JSON.stringify(page.slice(0, 1500))}; screenshot: ${name}.png (${e.message})`,
    )
  }
}

/**
 * Waits until the page's text includes `text`, reading it in the page itself. For
 * pages where WebKitWebDriver's element handles cannot be read at all ("non-Element
 * argument", seen after the thinkube plan's wizard pages re-render), which
 * `waitForText` cannot get past. Returns the page's text.
 */
export async function waitForPage(browser, text, timeout = WAIT) {
  // `text` is a string to find, or a function of the page's text that says whether it
  // is there yet (for what must be gone).
  const shows = typeof text === 'function' ? text : (page) => page.includes(text)
  let last = ''
  try {
    await browser.waitUntil(
      async () => {
        last = await browser.execute(() => document.body.innerText)
        return shows(last)
      },
      { timeout, interval: 100 },
    )
  } catch (e) {
    throw new Error(`the page never showed ${typeof text === 'function' ? text.toString() : `"${text}"`}; it showed: ${JSON.stringify(last.slice(0, 1500))} (${e.message})`)
  }
  return last
}

export async function clickButton(browser, name) {
  const button = await browser.$(`button=${name}`)
  await button.waitForClickable({ timeout: WAIT })
  await button.click()
}

/** Saves a screenshot once the page has painted its latest state. */
export async function screenshot(browser, name) {
  await browser.executeAsync((done) => requestAnimationFrame(() => requestAnimationFrame(() => done())))
  mkdirSync(artifacts, { recursive: true })
  const png = await browser.takeScreenshot()
  writeFileSync(join(artifacts, `${name}.png`), Buffer.from(png, 'base64'))
}

/** Polls `check` until it returns something truthy (and returns that), or fails naming `what`. */
export async function until(what, check, timeout = WAIT) {
  const deadline = Date.now() + timeout
  for (;;) {
    const value = await check()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** Whether `pid` is a live process (a zombie counts as gone: it has exited). */
export function alive(pid) {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'))
  } catch {
    return false
  }
}

/** The pid of the app window open on `world`'s default environment (from its app.lock). */
export function appPid(world) {
  return Number(readFileSync(join(world.home, 'app.lock'), 'utf8').trim())
}

/** The engine's view of the world, through the headless CLI of the same binary. */
export function cli(world, args) {
  return new Promise((ok) => {
    const child = spawn(app, args, { env: worldEnv(world), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.once('exit', (code) => ok({ code, stdout, stderr }))
  })
}

export async function statusJson(world) {
  const r = await cli(world, ['status', '--json'])
  if (r.code !== 0) throw new Error(`status failed: ${r.stderr}`)
  return JSON.parse(r.stdout)
}

/** Writes a plan folder under the world; returns the plan file's path. */
export function writePlan(world, name, files) {
  const dir = join(world.root, name)
  mkdirSync(dir, { recursive: true })
  for (const [file, text] of Object.entries(files)) writeFileSync(join(dir, file), text)
  return join(dir, 'plan.yaml')
}

/** A plan of two steps that succeed at once (`id: quick`); returns its path. */
export function writeQuickPlan(world) {
  const step = (id) => `      - id: ${id}\n        title: Step ${id.toUpperCase()}\n        command: ["true"]\n`
  const plan = `id: quick\ntitle: Two quick steps\nphases:\n  - id: one\n    title: Only phase\n    steps:\n${step('a')}${step('b')}`
  return writePlan(world, 'quick', { 'plan.yaml': plan })
}

/** Goes through the wizard for "this machine" and saves; `vars` fill the plan's variables. */
export async function configureThisMachine(browser, { vars = {}, deploy = true } = {}) {
  await clickButton(browser, 'Configure and deploy')
  await (await browser.$('input[type=radio][value=local]')).click()
  await clickButton(browser, 'Next')
  for (const [name, value] of Object.entries(vars)) {
    const input = await browser.$(`input[aria-label="Variable ${name}"]`)
    await input.waitForDisplayed({ timeout: WAIT })
    await input.setValue(value)
  }
  await clickButton(browser, 'Next')
  await waitForText(browser, 'section.review', 'Target')
  await clickButton(browser, deploy ? 'Save and deploy' : 'Save')
}

export async function stepStatuses(browser) {
  return browser.execute(() =>
    Object.fromEntries(
      [...document.querySelectorAll('li.step')].map((li) => [li.dataset.step, li.dataset.status]),
    ),
  )
}

/**
 * Fails naming the file when any of `secrets` is in a file the installer (its home) or
 * WebKit (its data and cache folders) wrote in `world`; returns how many were read.
 */
export function assertInNoFile(world, secrets, what = 'a secret') {
  const filesUnder = (dir) =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
      const p = join(dir, e.name)
      return e.isDirectory() ? filesUnder(p) : e.isFile() ? [p] : []
    })
  const files = [world.home, world.xdgData, world.xdgCache].flatMap(filesUnder)
  let searched = 0
  for (const f of files) {
    let bytes
    try {
      if (statSync(f).size > 50_000_000) continue
      bytes = readFileSync(f)
    } catch (e) {
      // The WebView's storage process may still be tidying its temporary files.
      if (e.code === 'ENOENT') continue
      throw e
    }
    searched += 1
    for (const secret of secrets) if (bytes.includes(secret)) throw new Error(`${f} holds ${what}`)
  }
  return { files, searched }
}

/**
 * A desktop keyring of the world's own: a session bus that starts no service by
 * itself (the system's bus would start GNOME Keyring on the real home) and an
 * unlocked GNOME Keyring on it, keeping its files under the world's XDG data folder
 * (so `assertInNoFile` searches them too). Returns the bus address, a lookup as
 * `secret-tool` makes it, and `stop`.
 */
export async function keyringService(world) {
  const address = `unix:path=${join(world.root, 'keyring-bus')}`
  const config = join(world.root, 'keyring-bus.conf')
  writeFileSync(config, `<busconfig>
  <type>session</type>
  <listen>${address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`)
  const children = []
  const stop = () => {
    for (const c of children) c.kill()
  }
  const bus = spawn('dbus-daemon', ['--nofork', '--print-address', `--config-file=${config}`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  children.push(bus)
  await new Promise((ok, fail) => {
    bus.stdout.once('data', ok)
    bus.once('exit', (c) => fail(new Error(`dbus-daemon exited with ${c}`)))
  })
  const runtime = join(world.root, 'keyring-run')
  mkdirSync(runtime, { recursive: true, mode: 0o700 })
  const env = { ...worldEnv(world), DBUS_SESSION_BUS_ADDRESS: address, XDG_RUNTIME_DIR: runtime }
  const keyring = spawn('gnome-keyring-daemon', ['--foreground', '--components=secrets', '--unlock'], {
    env,
    stdio: ['pipe', 'ignore', 'inherit'],
  })
  children.push(keyring)
  // The login keyring's password, read up to the end of its input.
  keyring.stdin.end('e2e login')
  const secretTool = (args) => spawnSync('secret-tool', args, { env, encoding: 'utf8' })
  await until('GNOME Keyring on the test bus', () =>
    spawnSync('gdbus', ['call', '--session', '--dest', 'org.freedesktop.DBus', '--object-path', '/org/freedesktop/DBus',
      '--method', 'org.freedesktop.DBus.NameHasOwner', 'org.freedesktop.secrets'], { env, encoding: 'utf8' })
      .stdout?.includes('true'))
  return {
    address,
    runtime,
    /** What the keyring holds for these attributes (`secret-tool lookup`), or null. */
    lookup(attributes) {
      const r = secretTool(['lookup', ...Object.entries(attributes).flat()])
      // secret-tool missing is the test machine's fault, not "not in the keyring".
      if (r.error) throw new Error(`secret-tool could not run (scripts/ensure-system installs libsecret-tools): ${r.error.message}`)
      return r.status === 0 ? r.stdout : null
    },
    stop,
  }
}
