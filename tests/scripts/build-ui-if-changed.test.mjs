// The launcher's decision whether to build the UI (scripts/build-ui-if-changed.mjs),
// run on a small project tree of its own with a build command that records each build.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'scripts', 'build-ui-if-changed.mjs')
/** Writes ui/dist from ui/src and counts the builds, as `vite build` would write it. */
const BUILD = 'mkdir -p ui/dist && cat ui/src/*.ts > ui/dist/index.html && echo build >> builds.log'

function project() {
  const root = mkdtempSync(join(tmpdir(), 'build-ui-'))
  mkdirSync(join(root, 'ui', 'src'), { recursive: true })
  writeFileSync(join(root, 'ui', 'index.html'), '<div id="app"></div>\n')
  writeFileSync(join(root, 'ui', 'src', 'main.ts'), 'console.log(1)\n')
  writeFileSync(join(root, 'package.json'), '{"name":"p"}\n')
  writeFileSync(join(root, 'package-lock.json'), '{"lockfileVersion":3}\n')
  return root
}

function launch(root, command = BUILD) {
  const run = spawnSync('node', [SCRIPT], {
    env: { ...process.env, THINKUBE_BUILD_ROOT: root, THINKUBE_UI_BUILD: command },
    encoding: 'utf8',
  })
  return { status: run.status, out: run.stdout, err: run.stderr }
}

function builds(root) {
  const log = join(root, 'builds.log')
  return existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0
}

test('a second launch with nothing changed does not build the UI', (t) => {
  const root = project()
  t.after(() => rmSync(root, { recursive: true, force: true }))
  const first = launch(root)
  assert.equal(first.status, 0, first.err)
  assert.match(first.out, /UI: building, because: ui\/dist has not been built/)
  assert.equal(builds(root), 1)

  const second = launch(root)
  assert.equal(second.status, 0, second.err)
  assert.match(second.out, /UI: up to date/)
  assert.equal(builds(root), 1, 'the second launch built the UI again')
})

test('a changed, added or removed UI source rebuilds the UI and names the file', (t) => {
  const root = project()
  t.after(() => rmSync(root, { recursive: true, force: true }))
  assert.equal(launch(root).status, 0)

  appendFileSync(join(root, 'ui', 'src', 'main.ts'), 'console.log(2)\n')
  const edited = launch(root)
  assert.equal(edited.status, 0, edited.err)
  assert.match(edited.out, /because: ui\/src\/main\.ts changed\n/)
  assert.equal(builds(root), 2)
  assert.match(readFileSync(join(root, 'ui', 'dist', 'index.html'), 'utf8'), /console\.log\(2\)/)

  writeFileSync(join(root, 'ui', 'src', 'extra.ts'), 'export {}\n')
  assert.match(launch(root).out, /because: ui\/src\/extra\.ts added\n/)
  rmSync(join(root, 'ui', 'src', 'extra.ts'))
  assert.match(launch(root).out, /because: ui\/src\/extra\.ts removed\n/)
  assert.equal(builds(root), 4)
  assert.match(launch(root).out, /up to date/)
  assert.equal(builds(root), 4)
})

test('a changed npm lock file rebuilds the UI; files outside its inputs do not', (t) => {
  const root = project()
  t.after(() => rmSync(root, { recursive: true, force: true }))
  assert.equal(launch(root).status, 0)

  // The build's own output, tools' caches (vitest writes its results under
  // ui/node_modules), the cargo target folder and the Rust sources are not inputs.
  writeFileSync(join(root, 'ui', 'dist', 'other.js'), 'x\n')
  mkdirSync(join(root, 'ui', 'node_modules', '.vite', 'vitest'), { recursive: true })
  writeFileSync(join(root, 'ui', 'node_modules', '.vite', 'vitest', 'results.json'), '{}\n')
  mkdirSync(join(root, 'target'), { recursive: true })
  writeFileSync(join(root, 'target', 'x'), 'x\n')
  mkdirSync(join(root, 'src-tauri'), { recursive: true })
  writeFileSync(join(root, 'src-tauri', 'main.rs'), 'fn main() {}\n')
  assert.match(launch(root).out, /up to date/)
  assert.equal(builds(root), 1)

  writeFileSync(join(root, 'package-lock.json'), '{"lockfileVersion":3,"packages":{}}\n')
  assert.match(launch(root).out, /because: package-lock\.json changed\n/)
  mkdirSync(join(root, 'node_modules'), { recursive: true })
  writeFileSync(join(root, 'node_modules', '.package-lock.json'), '{}\n')
  assert.match(launch(root).out, /because: node_modules\/\.package-lock\.json added\n/)
  assert.equal(builds(root), 3)
})

test('a missing ui/dist is built even when the sources did not change', (t) => {
  const root = project()
  t.after(() => rmSync(root, { recursive: true, force: true }))
  assert.equal(launch(root).status, 0)
  rmSync(join(root, 'ui', 'dist'), { recursive: true })
  assert.match(launch(root).out, /because: ui\/dist has not been built/)
  assert.equal(builds(root), 2)
  assert.ok(existsSync(join(root, 'ui', 'dist', 'index.html')))
})

test('a failed build exits non-zero, says so, and is built again at the next launch', (t) => {
  const root = project()
  t.after(() => rmSync(root, { recursive: true, force: true }))
  assert.equal(launch(root).status, 0)

  // The failing build leaves ui/dist half-written; reverting the edit afterwards must
  // not make the launcher trust that ui/dist.
  const source = join(root, 'ui', 'src', 'main.ts')
  const before = readFileSync(source, 'utf8')
  appendFileSync(source, 'syntax error\n')
  const failed = launch(root, 'echo half > ui/dist/index.html; echo "vite: syntax error" >&2; exit 3')
  assert.equal(failed.status, 3)
  assert.match(failed.err, /UI build failed \(`.*` exited 3\): fix the error above; the next launch builds it again/)
  writeFileSync(source, before)

  const next = launch(root)
  assert.equal(next.status, 0, next.err)
  assert.match(next.out, /because: no record of an earlier build/)
  assert.equal(builds(root), 2)
  assert.equal(readFileSync(join(root, 'ui', 'dist', 'index.html'), 'utf8'), before)
})

test('many changes are named up to ten, then counted', (t) => {
  const root = project()
  t.after(() => rmSync(root, { recursive: true, force: true }))
  assert.equal(launch(root).status, 0)
  for (let i = 10; i < 23; i++) writeFileSync(join(root, 'ui', 'src', `f${i}.ts`), `export const x = ${i}\n`)
  const out = launch(root).out
  assert.match(out, /ui\/src\/f19\.ts added and 3 more\n/)
  assert.doesNotMatch(out, /f20\.ts/)
})
