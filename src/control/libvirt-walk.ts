/**
 * Reading libvirt XML against a grammar (docs/libvirt.md): element paths for
 * messages (`network/tunnel/peer[2]/@publicKey`, XPath style, 1-based indices
 * among same-named siblings), attribute and child accessors, unknown
 * attributes/elements reported with a "did you mean", and the problems of one
 * file collected so that the operator sees all of them at once.
 */
import { ConfigError, didYouMean, type ConfigProblem } from './config-errors.js';
import { childElements, directText, type XmlAttribute, type XmlElement, type XmlPosition } from './xml.js';

/** An element together with its path from the root, for messages. */
export interface XNode {
  readonly el: XmlElement;
  /** `network/tunnel/peer[2]`. */
  readonly path: string;
}

/** The result of a value check: the parsed value, or the text that completes "expected …". */
export type Parsed<T> = { value: T } | string;

/** Problems found in one XML file; thrown together as one ConfigError. */
export class XmlProblems {
  private readonly found: { problem: ConfigProblem; order: number }[] = [];

  constructor(readonly file: string) {}

  /** Records a problem at `path` (position `at`, when known). */
  add(path: string, message: string, at?: XmlPosition): void {
    const problem: ConfigProblem = at === undefined ? { path, message } : { path, message, line: at.line, column: at.column };
    const order = at === undefined ? Infinity : at.line * 1e6 + at.column;
    if (!this.found.some((f) => f.problem.path === path && f.problem.message === message)) this.found.push({ problem, order });
  }

  /** Records `VALUE is not valid: expected …` at an attribute. */
  invalid(n: XNode, a: XmlAttribute, expected: string): void {
    this.add(attrPath(n, a.name), `${JSON.stringify(a.value)} is not valid: ${expected}`, a);
  }

  get count(): number {
    return this.found.length;
  }

  /** Throws ConfigError CONFIG_INVALID with every problem so far, in file order; no-op when there are none. */
  throwIfAny(): void {
    if (this.found.length === 0) return;
    const sorted = [...this.found].sort((a, b) => (a.order === b.order ? 0 : a.order < b.order ? -1 : 1));
    throw new ConfigError(
      'CONFIG_INVALID',
      this.file,
      sorted.map((f) => f.problem),
    );
  }
}

/** The root as an XNode. */
export function rootNode(el: XmlElement): XNode {
  return { el, path: el.name };
}

/** `path/@name`. */
export function attrPath(n: XNode, name: string): string {
  return `${n.path}/@${name}`;
}

/** Child elements of `n` named `local` (no namespace), with their paths. */
export function kids(n: XNode, local: string, ns = ''): XNode[] {
  const all = childElements(n.el).filter((c) => c.local === local && c.ns === ns);
  return all.map((el, k) => ({ el, path: `${n.path}/${el.name}${all.length > 1 ? `[${k + 1}]` : ''}` }));
}

/** The one child named `local`, or undefined; a second one is a problem. */
export function kid(n: XNode, local: string, p: XmlProblems): XNode | undefined {
  const all = kids(n, local);
  for (const extra of all.slice(1)) p.add(extra.path, `a second <${local}>; <${n.el.name}> has at most one`, extra.el);
  return all[0];
}

/** The one required child named `local`; reports it missing. */
export function requiredKid(n: XNode, local: string, p: XmlProblems, expected: string): XNode | undefined {
  const k = kid(n, local, p);
  if (k === undefined) p.add(`${n.path}/${local}`, `missing: expected ${expected}`, n.el);
  return k;
}

/** The attribute `name` (no namespace) of `n`, or undefined. */
export function attrOf(n: XNode, name: string): XmlAttribute | undefined {
  return n.el.attributes.find((a) => a.local === name && a.ns === '');
}

/**
 * Reads attribute `name` through `parse`. Missing: undefined, and a problem when `required`
 * (`expected` then completes "missing: expected …"). Invalid: undefined and a problem.
 */
export function attrValue<T>(n: XNode, name: string, p: XmlProblems, parse: (v: string) => Parsed<T>, required?: string): T | undefined {
  const a = attrOf(n, name);
  if (a === undefined) {
    if (required !== undefined) p.add(attrPath(n, name), `missing: expected ${required}`, n.el);
    return undefined;
  }
  const r = parse(a.value);
  if (typeof r === 'string') {
    p.invalid(n, a, r);
    return undefined;
  }
  return r.value;
}

/** The text of an element that holds only text (trimmed); child elements are a problem. */
export function textValue<T>(n: XNode, p: XmlProblems, parse: (v: string) => Parsed<T>): T | undefined {
  for (const c of childElements(n.el)) p.add(`${n.path}/${c.name}`, `unknown element <${c.name}>: <${n.el.name}> holds only text`, c);
  const text = directText(n.el).trim();
  const r = parse(text);
  if (typeof r === 'string') {
    p.add(n.path, `${JSON.stringify(text)} is not valid: ${r}`, n.el);
    return undefined;
  }
  return r.value;
}

/**
 * Reports attributes and child elements of `n` outside its grammar, and text
 * unless `o.text`. Attributes in a namespace and elements in a namespace other
 * than `o.ns` (default: none) are reported too: the grammar has none.
 * Children for which `o.skip` is true are the caller's to check.
 */
export function checkShape(
  n: XNode,
  p: XmlProblems,
  attributes: readonly string[],
  children: readonly string[],
  o: { ns?: string; text?: boolean; skip?: (c: XmlElement) => boolean } = {},
): void {
  const ns = o.ns ?? '';
  for (const a of n.el.attributes) {
    if (a.ns === '' && attributes.includes(a.local)) continue;
    const hint = a.ns === '' ? didYouMean(a.local, attributes) : '';
    const known = attributes.length === 0 ? `<${n.el.name}> has no attributes` : `known attributes: ${attributes.join(', ')}`;
    p.add(attrPath(n, a.name), `unknown attribute${hint === '' ? '' : `;${hint}`} (${known})`, a);
  }
  for (const c of n.el.children) {
    if (c.kind === 'text') {
      if (!o.text && c.text.trim() !== '') p.add(n.path, `unexpected text ${JSON.stringify(shorten(c.text.trim()))} in <${n.el.name}>; it holds only elements`, c);
      continue;
    }
    if ((c.ns === ns && children.includes(c.local)) || o.skip?.(c)) continue;
    const hint = c.ns === ns ? didYouMean(c.local, children) : '';
    const known = children.length === 0 ? `<${n.el.name}> has no child elements` : `known elements here: ${children.map((k) => `<${k}>`).join(', ')}`;
    const nsNote = c.ns !== ns ? ` in namespace "${c.ns}"` : '';
    p.add(`${n.path}/${c.name}`, `unknown element <${c.name}>${nsNote}${hint === '' ? '' : `;${hint}`} (${known})`, c);
  }
}

function shorten(s: string): string {
  return s.length > 40 ? `${s.slice(0, 39)}…` : s;
}

/** Splits a list attribute: names separated by white space or commas. */
export function splitList(v: string): string[] {
  return v.split(/[\s,]+/).filter((s) => s !== '');
}
