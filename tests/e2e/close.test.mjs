// 12. Closing the window during a deployment asks first (it killed the run without
// asking): let it finish in the background (the window hides, the run goes on, the
// app exits when it ends, the next window shows it), or stop it (recorded
// interrupted). A second launch on the environment brings the window forward (it
// exited 3 with a message on stderr only).
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import {
  alive, app, appPid, clickButton, configureThisMachine, display, launch, newWorld, screenshot, statusJson,
  stepStatuses, stopDisplay, until, waitForText, worldEnv, writePlan,
} from './harness.mjs'

after(stopDisplay)

const here = dirname(fileURLToPath(import.meta.url))

const PLAN = `id: waiting
title: A step that waits for a file
phases:
  - id: one
    title: Only phase
    steps:
      - id: wait
        title: Wait for go
        command: [sh, -c, "while [ ! -f go ]; do sleep 0.05; done"]
      - id: last
        title: Last
        command: ["true"]
`

/** Presses the window's close button, as a window manager does. */
async function pressClose(pid) {
  const r = spawnSync('python3', [join(here, 'close-window.py'), String(pid)], {
    env: { ...process.env, DISPLAY: await display() },
    encoding: 'utf8',
  })
  assert.equal(r.status, 0, `close-window.py: ${r.stderr}`)
}

/** Starts the deployment and returns once its first step runs, with the app's pid. */
async function deployingAndWaiting(world, browser) {
  await waitForText(browser, 'main', 'No deployment yet')
  await configureThisMachine(browser)
  await until('the step to run', async () => (await stepStatuses(browser)).wait === 'running')
  return appPid(world)
}

/** The app binary launched a second time on `world`, to its exit. */
async function secondLaunch(world) {
  const env = { ...worldEnv(world), DISPLAY: await display() }
  return new Promise((ok) => {
    const child = spawn(app, [], { env, stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (out += d))
    child.once('exit', (code) => ok({ code, out }))
  })
}

test('closed during a run, it asks; in the background the run finishes, the app exits, the next window shows it', async () => {
  const world = newWorld('close-bg')
  const plan = writePlan(world, 'waiting', { 'plan.yaml': PLAN })
  const first = await launch(world, ['--plan', plan])
  let pid
  try {
    pid = await deployingAndWaiting(world, first.browser)
    await pressClose(pid)
    await waitForText(first.browser, '[role=alertdialog]', 'A deployment is running')
    await screenshot(first.browser, 'close-during-run')
    assert.ok(alive(pid), 'the close was held: the app still runs')
    assert.equal((await stepStatuses(first.browser)).wait, 'running')
    await clickButton(first.browser, 'Let it finish in the background')
    // Hidden, the app goes on with the run.
    await until('the window to hide', async () => (await first.browser.execute(() => document.visibilityState)) === 'hidden', 10_000)
    assert.ok(alive(pid))
    writeFileSync(join(dirname(plan), 'go'), '')
    await until('the app to exit once the run ended', () => !alive(pid), 60_000)
    assert.equal((await statusJson(world)).deployment.status, 'completed')
  } finally {
    await first.close()
  }
  const next = await launch(world, ['--plan', plan])
  try {
    await waitForText(next.browser, '[data-testid=existing-deployment]', 'completed')
  } finally {
    await next.close()
  }
})

test('closed during a run and stopped, the running step is recorded interrupted and the app exits', async () => {
  const world = newWorld('close-stop')
  const plan = writePlan(world, 'waiting', { 'plan.yaml': PLAN })
  const { browser, close } = await launch(world, ['--plan', plan])
  try {
    const pid = await deployingAndWaiting(world, browser)
    await pressClose(pid)
    await waitForText(browser, '[role=alertdialog]', 'A deployment is running')
    await clickButton(browser, 'Stop it and close')
    await until('the app to exit once the run stopped', () => !alive(pid), 60_000)
    const v = await statusJson(world)
    assert.equal(v.steps.find((s) => s.id === 'wait').status, 'interrupted')
    assert.equal(v.deployment.status, 'interrupted')
    assert.equal(v.lock.held, false)
  } finally {
    await close()
  }
})

test('a second launch brings the open window forward, the hidden one too, and it then stays open', async () => {
  const world = newWorld('second')
  const plan = writePlan(world, 'waiting', { 'plan.yaml': PLAN })
  const { browser, close } = await launch(world, ['--plan', plan])
  try {
    const pid = await deployingAndWaiting(world, browser)
    let r = await secondLaunch(world)
    assert.equal(r.code, 0, r.out)
    assert.match(r.out, new RegExp(`window \\(pid ${pid}\\) already open on environment \`default\` was brought forward`))

    await pressClose(pid)
    await clickButton(browser, 'Let it finish in the background')
    await until('the window to hide', async () => (await browser.execute(() => document.visibilityState)) === 'hidden', 10_000)
    r = await secondLaunch(world)
    assert.equal(r.code, 0, r.out)
    await until('the window to show again', async () => (await browser.execute(() => document.visibilityState)) === 'visible', 10_000)
    // The user is back: the run's end no longer closes the app.
    writeFileSync(join(dirname(plan), 'go'), '')
    await waitForText(browser, '[data-testid=run-ended]', 'All steps completed.', 60_000)
    assert.ok(alive(pid), 'the app stays open')
  } finally {
    await close()
  }
})
