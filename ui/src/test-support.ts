// Builders for component tests: snapshots and steps as the backend sends them.
import type { DOMWrapper } from '@vue/test-utils'
import type { Snapshot } from './bindings/Snapshot'
import type { StepView } from './bindings/StepView'

export function step(id: string, status: StepView['status'], extra: Partial<StepView> = {}): StepView {
  return { id, phase: 'p1', title: `Title ${id}`, status, attempts: 1, skip_reason: null, notice: null, last_error: null, attempt_list: [], ...extra }
}

export function snapshot(steps: StepView[], opts: { lineage?: string; serial?: number; status?: string; lockPid?: number } = {}): Snapshot {
  const count = (s: string) => steps.filter((x) => x.status === s).length
  const total = steps.filter((x) => x.status !== 'skipped').length
  const lineage = opts.lineage ?? 'lin-1'
  const serial = opts.serial ?? 5
  return {
    status: {
      schema_version: 3, lineage, serial, environment: 'default', state_file: '/h/deployment-state.json',
      deployment: { id: steps.length ? 'd-1' : null, status: (opts.status ?? 'in_progress') as never, plan_id: 'demo', plan_digest: null },
      progress: {
        completed: count('completed'), failed: count('failed'), skipped: count('skipped'), interrupted: count('interrupted'),
        pending: count('pending'), running: count('running'), total,
        percentage: total ? Math.floor((100 * count('completed')) / total) : 0,
      },
      phases: [{ id: 'p1', title: 'Phase one' }],
      steps,
      current_run: null,
      lock: opts.lockPid
        ? { held: true, pid: opts.lockPid, operation: 'deploy', since: '2026-11-22T00:00:00Z', user: 'u', host: 'h' }
        : { held: false, pid: null, operation: null, since: null, user: null, host: null },
      converted_from: null,
    },
    document: { schema_version: 3, lineage, serial, deployment: {} },
    problem: null,
    running_here: false,
    title: 'Thinkube Installer',
  }
}

export const emptySnapshot = (): Snapshot => ({ ...snapshot([]), document: null, status: { ...snapshot([]).status!, lineage: null } })

// Queries by what a person (and a screen reader) perceives: an element's role and its
// accessible name, not its CSS classes or test ids.
type Queryable = { findAll: (selector: string) => DOMWrapper<Element>[] }

const IMPLICIT_ROLES: Record<string, string> = {
  button: 'button', a: 'link', table: 'table', tr: 'row', form: 'form', textarea: 'textbox', select: 'combobox',
  fieldset: 'group', h1: 'heading', h2: 'heading', h3: 'heading', h4: 'heading', section: 'region', ul: 'list', li: 'listitem',
}
const INPUT_ROLES: Record<string, string> = {
  checkbox: 'checkbox', radio: 'radio', button: 'button', submit: 'button', text: 'textbox', email: 'textbox',
  number: 'spinbutton', search: 'searchbox',
}

function roleOf(el: Element): string | null {
  const explicit = el.getAttribute('role')
  if (explicit) return explicit
  const tag = el.tagName.toLowerCase()
  if (tag === 'input') return INPUT_ROLES[el.getAttribute('type') ?? 'text'] ?? null
  return IMPLICIT_ROLES[tag] ?? null
}

/** The accessible name: aria-label, else the label that holds or names it, else its text. */
export function accessibleName(el: Element): string {
  const label = el.getAttribute('aria-label')
  if (label) return label
  if (el.tagName === 'FIELDSET') return (el.querySelector('legend')?.textContent ?? '').trim()
  const id = el.getAttribute('id')
  // The component may not be attached to the document: look from the top of its tree.
  const root = el.getRootNode() as ParentNode
  const byFor = id ? root.querySelector(`label[for="${id}"]`) : null
  const holder = byFor ?? (el.tagName !== 'LABEL' ? el.closest('label') : null)
  if (holder && ['INPUT', 'SELECT', 'TEXTAREA'].includes(el.tagName)) return (holder.textContent ?? '').trim()
  return (el.textContent ?? '').trim()
}

function matches(text: string, name: string | RegExp | undefined): boolean {
  return name === undefined || (typeof name === 'string' ? text === name : name.test(text))
}

/** Every element of `role` (whose accessible name is `name`, when given). */
export function allByRole(w: Queryable, role: string, name?: string | RegExp): DOMWrapper<Element>[] {
  return w.findAll('*').filter((e) => roleOf(e.element) === role && matches(accessibleName(e.element), name))
}

/** The one element of `role` named `name`; fails naming what there is otherwise. */
export function byRole(w: Queryable, role: string, name?: string | RegExp): DOMWrapper<Element> {
  const found = allByRole(w, role, name)
  if (found.length !== 1) {
    const present = allByRole(w, role).map((e) => JSON.stringify(accessibleName(e.element)))
    throw new Error(`expected one ${role} named ${String(name)}, found ${found.length}; ${role}s present: ${present.join(', ') || 'none'}`)
  }
  return found[0]!
}

/** The one form field whose label matches `label` (a password field has no role). */
export function byLabel(w: Queryable, label: string | RegExp): DOMWrapper<Element> {
  const found = w.findAll('input, select, textarea').filter((e) => matches(accessibleName(e.element), label))
  if (found.length !== 1) throw new Error(`expected one field labelled ${String(label)}, found ${found.length}`)
  return found[0]!
}
