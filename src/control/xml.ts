/**
 * A small, strict XML 1.0 reader for libvirt definitions (docs/libvirt.md):
 * elements, attributes, text, the five predefined entities and character
 * references, comments, CDATA sections, processing instructions (skipped) and
 * namespaces (XML Namespaces 1.0). It refuses what a libvirt file never needs
 * and an attacker would: any DOCTYPE (so no DTD, no entity declarations, no
 * external entities), unknown entities, encodings other than UTF-8.
 *
 * Stages: size limit → UTF-8 decode → line-end normalisation (XML §2.11) →
 * character check (XML §2.2) → prolog (XML declaration, comments, PIs;
 * DOCTYPE refused) → one root element (recursive, depth-limited) → epilogue →
 * namespace resolution while elements open. Every error is a ConfigError
 * `CONFIG_SYNTAX` naming the file, line and column.
 */
import { readFile, stat } from 'node:fs/promises';
import { ConfigError, fileReadError } from './config-errors.js';

/** Largest XML document accepted (as config files: 1 MiB). */
export const XML_MAX_BYTES = 1 << 20;

/** Deepest element nesting accepted. */
export const XML_MAX_DEPTH = 128;

/** The namespace bound to the `xml` prefix (XML Namespaces §3). */
export const XML_NAMESPACE = 'http://www.w3.org/XML/1998/namespace';
const XMLNS_NAMESPACE = 'http://www.w3.org/2000/xmlns/';

/** A 1-based position in the (line-end normalised) text. */
export interface XmlPosition {
  readonly line: number;
  readonly column: number;
}

/** An attribute; `xmlns` declarations are not attributes (they are resolved into `ns`). */
export interface XmlAttribute extends XmlPosition {
  /** As written, with its prefix. */
  readonly name: string;
  readonly local: string;
  /** Namespace URI; '' for an unprefixed attribute (XML Namespaces §6.2). */
  readonly ns: string;
  /** With entities expanded and white space normalised (XML §3.3.3). */
  readonly value: string;
}

/** Character data (text and CDATA sections, merged when adjacent). */
export interface XmlText extends XmlPosition {
  readonly kind: 'text';
  readonly text: string;
}

/** An element. */
export interface XmlElement extends XmlPosition {
  readonly kind: 'element';
  /** As written, with its prefix. */
  readonly name: string;
  readonly local: string;
  /** Namespace URI; '' for none. */
  readonly ns: string;
  readonly attributes: readonly XmlAttribute[];
  readonly children: readonly (XmlElement | XmlText)[];
}

/** The parsed document: its root element. */
export interface XmlDocument {
  readonly root: XmlElement;
}

class XmlSyntax extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
  }
}

// XML §2.3 Names (without the astral planes, which no libvirt name uses).
const NAME_START = 'A-Z_a-z\\u00C0-\\u00D6\\u00D8-\\u00F6\\u00F8-\\u02FF\\u0370-\\u037D\\u037F-\\u1FFF\\u200C-\\u200D\\u2070-\\u218F\\u2C00-\\u2FEF\\u3001-\\uD7FF\\uF900-\\uFDCF\\uFDF0-\\uFFFD';
const NAME_CHAR = `${NAME_START}\\-.0-9\\u00B7\\u0300-\\u036F\\u203F-\\u2040`;
/** A qualified name: NCName (":" NCName)? (XML Namespaces §4). */
const QNAME = new RegExp(`[${NAME_START}][${NAME_CHAR}]*(?::[${NAME_START}][${NAME_CHAR}]*)?`, 'y');
/** Any XML Name, for a clear message when a name has two colons. */
const ANY_NAME = new RegExp(`[:${NAME_START}][:${NAME_CHAR}]*`, 'y');
// XML §2.2 Char: anything but these (the astral planes arrive as valid surrogate pairs).
// eslint-disable-next-line no-control-regex
const BAD_CHAR = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/;
const PREDEFINED: Record<string, string> = { lt: '<', gt: '>', amp: '&', apos: "'", quot: '"' };

/** Where a run of plain text ends: markup, a reference, or the forbidden "]]>". */
const TEXT_STOP = /[<&]|\]\]>/g;

/** XML §3.3.3 for CDATA attributes: literal tab and newline become a space (characters from references keep theirs). */
function literal(run: string): string {
  return run.replace(/[\t\n]/g, ' ');
}

/** Reads and decodes an XML file of at most XML_MAX_BYTES; throws ConfigError (CONFIG_READ, CONFIG_SYNTAX). */
export async function readXmlFile(path: string): Promise<XmlDocument> {
  let bytes: Uint8Array;
  try {
    const st = await stat(path);
    if (st.isDirectory()) throw Object.assign(new Error('directory'), { code: 'EISDIR' });
    if (st.isFile() && st.size > XML_MAX_BYTES) throw tooBig(path, st.size);
    bytes = await readFile(path);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw fileReadError('XML file', path, e);
  }
  if (bytes.length > XML_MAX_BYTES) throw tooBig(path, bytes.length);
  return parseXml(decodeXml(bytes, path), path);
}


function tooBig(path: string, size: number): ConfigError {
  return new ConfigError('CONFIG_READ', path, [{ path: '', message: `cannot read XML file: it is ${size} bytes; the limit is ${XML_MAX_BYTES} bytes (1 MiB)` }]);
}

/** Decodes XML bytes as UTF-8 (a byte order mark is dropped); throws ConfigError CONFIG_SYNTAX. */
export function decodeXml(bytes: Uint8Array, file: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError('CONFIG_SYNTAX', file, [{ path: '', message: 'syntax error: the file is not UTF-8 text' }]);
  }
}

/** Parses XML text; throws ConfigError CONFIG_SYNTAX with line and column. `file` names the source in messages. */
export function parseXml(input: string, file: string): XmlDocument {
  // XML §2.11: CR LF and lone CR become LF before anything else.
  const text = input.replace(/\r\n?/g, '\n');
  const starts = [0];
  for (let k = 0; k < text.length; k++) if (text.charCodeAt(k) === 10) starts.push(k + 1);
  const position = (offset: number): XmlPosition => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, column: offset - starts[lo]! + 1 };
  };
  try {
    return { root: new Parser(text, position).document() };
  } catch (e) {
    if (e instanceof XmlSyntax) {
      throw new ConfigError('CONFIG_SYNTAX', file, [{ path: '', message: `syntax error: ${e.message}`, ...position(e.offset) }]);
    }
    throw e;
  }
}

interface RawAttribute {
  name: string;
  value: string;
  offset: number;
}

class Parser {
  private i = 0;

  constructor(
    private readonly text: string,
    private readonly position: (offset: number) => XmlPosition,
  ) {}

  document(): XmlElement {
    const bad = BAD_CHAR.exec(this.text);
    if (bad !== null) {
      const code = bad[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
      throw new XmlSyntax(`character U+${code} is not allowed in XML (XML 1.0 §2.2)`, bad.index);
    }
    if (this.text.startsWith('<?xml') && /^<\?xml[\s?]/.test(this.text)) this.declaration();
    this.misc(true);
    if (this.i >= this.text.length) throw new XmlSyntax('no root element: the document is empty', this.i);
    if (this.text[this.i] !== '<') throw new XmlSyntax(`text outside the root element; expected "<"`, this.i);
    const root = this.element(new Map([['xml', XML_NAMESPACE]]), 1);
    this.misc(false);
    if (this.i < this.text.length) {
      if (this.text[this.i] === '<') throw new XmlSyntax('a second root element; an XML document has exactly one', this.i);
      throw new XmlSyntax('text after the root element', this.i);
    }
    return root;
  }

  /** XMLDecl (XML §2.8): version 1.0, encoding UTF-8 when given, standalone ignored. */
  private declaration(): void {
    const start = this.i;
    const end = this.text.indexOf('?>', start);
    if (end < 0) throw new XmlSyntax('unterminated XML declaration; expected "?>"', start);
    const body = this.text.slice(start + 5, end);
    const m = /^\s+version\s*=\s*(["'])1\.[0-9]+\1(?:\s+encoding\s*=\s*(["'])([A-Za-z][A-Za-z0-9._-]*)\2)?(?:\s+standalone\s*=\s*(["'])(?:yes|no)\4)?\s*$/.exec(body);
    if (m === null) throw new XmlSyntax('malformed XML declaration; expected <?xml version="1.0" encoding="UTF-8"?>', start);
    const encoding = m[3];
    if (encoding !== undefined && !/^utf-?8$/i.test(encoding)) {
      throw new XmlSyntax(`encoding "${encoding}" is not supported; only UTF-8`, start + 5 + body.indexOf(encoding));
    }
    this.i = end + 2;
  }

  /** Misc* (XML §2.8): white space, comments, PIs; a DOCTYPE is refused. */
  private misc(prolog: boolean): void {
    for (;;) {
      this.space();
      if (this.text.startsWith('<!--', this.i)) this.comment();
      else if (this.text.startsWith('<?', this.i)) this.pi();
      else if (this.text.startsWith('<!DOCTYPE', this.i)) {
        throw new XmlSyntax(
          prolog
            ? 'DOCTYPE is not accepted: no DTDs, entity declarations or external entities (libvirt XML never needs one)'
            : 'DOCTYPE after the root element',
          this.i,
        );
      } else return;
    }
  }

  private space(): void {
    for (;;) {
      const c = this.text.charCodeAt(this.i);
      if (c === 0x20 || c === 0x09 || c === 0x0a) this.i++;
      else return;
    }
  }

  private comment(): void {
    const start = this.i;
    const end = this.text.indexOf('--', start + 4);
    if (end < 0) throw new XmlSyntax('unterminated comment; expected "-->"', start);
    if (this.text[end + 2] !== '>') throw new XmlSyntax('"--" is not allowed inside a comment (XML 1.0 §2.5)', end);
    this.i = end + 3;
  }

  private pi(): void {
    const start = this.i;
    this.i += 2;
    const target = this.name('a processing instruction target');
    if (target.toLowerCase() === 'xml') throw new XmlSyntax('an XML declaration is allowed only at the very start of the file', start);
    const end = this.text.indexOf('?>', this.i);
    if (end < 0) throw new XmlSyntax('unterminated processing instruction; expected "?>"', start);
    if (end > this.i && !/^[ \t\n]/.test(this.text[this.i]!)) throw new XmlSyntax('expected white space after the processing instruction target', this.i);
    this.i = end + 2;
  }

  private name(what: string): string {
    QNAME.lastIndex = this.i;
    const m = QNAME.exec(this.text);
    ANY_NAME.lastIndex = this.i;
    const any = ANY_NAME.exec(this.text);
    if (any !== null && (m === null || any[0].length > m[0].length)) {
      throw new XmlSyntax(`"${any[0]}" is not a valid name with namespaces (at most one ":", not first or last)`, this.i);
    }
    if (m === null) throw new XmlSyntax(`expected ${what}, found ${this.shown()}`, this.i);
    this.i += m[0].length;
    return m[0];
  }

  private shown(): string {
    return this.i >= this.text.length ? 'end of file' : JSON.stringify(this.text[this.i]);
  }

  /** An element starting at "<"; `scope` maps prefixes ('' = default) to namespace URIs. */
  private element(outer: ReadonlyMap<string, string>, depth: number): XmlElement {
    const start = this.i;
    if (depth > XML_MAX_DEPTH) throw new XmlSyntax(`elements nested deeper than ${XML_MAX_DEPTH} levels`, start);
    this.i++; // "<"
    const name = this.name('an element name');
    const raw: RawAttribute[] = [];
    let selfClosing = false;
    for (;;) {
      const before = this.i;
      this.space();
      const c = this.text[this.i];
      if (c === '>') {
        this.i++;
        break;
      }
      if (c === '/' && this.text[this.i + 1] === '>') {
        this.i += 2;
        selfClosing = true;
        break;
      }
      if (c === undefined) throw new XmlSyntax(`unclosed start tag <${name}>; expected ">" or "/>"`, start);
      if (this.i === before) throw new XmlSyntax(`expected white space, ">" or "/>" in <${name}>, found ${this.shown()}`, this.i);
      raw.push(this.attribute(name, raw));
    }

    // Namespace declarations first, then every prefix resolves in the new scope.
    let scope = outer;
    for (const a of raw) {
      if (a.name !== 'xmlns' && !a.name.startsWith('xmlns:')) continue;
      if (scope === outer) scope = new Map(outer);
      const prefix = a.name === 'xmlns' ? '' : a.name.slice(6);
      if (prefix === 'xmlns') throw new XmlSyntax('the prefix "xmlns" cannot be declared (XML Namespaces §3)', a.offset);
      if (prefix === 'xml' ? a.value !== XML_NAMESPACE : a.value === XML_NAMESPACE || a.value === XMLNS_NAMESPACE) {
        throw new XmlSyntax(`the namespace "${a.value}" is reserved (XML Namespaces §3)`, a.offset);
      }
      if (prefix !== '' && a.value === '') throw new XmlSyntax(`the prefix "${prefix}" cannot be bound to the empty namespace (XML Namespaces 1.0)`, a.offset);
      (scope as Map<string, string>).set(prefix, a.value);
    }
    const resolve = (qname: string, offset: number, isElement: boolean): { local: string; ns: string } => {
      const colon = qname.indexOf(':');
      if (colon < 0) return { local: qname, ns: isElement ? (scope.get('') ?? '') : '' };
      const prefix = qname.slice(0, colon);
      const ns = scope.get(prefix);
      if (ns === undefined) throw new XmlSyntax(`the namespace prefix "${prefix}" of "${qname}" is not declared (add xmlns:${prefix}="…")`, offset);
      return { local: qname.slice(colon + 1), ns };
    };
    const el = resolve(name, start + 1, true);
    const attributes: XmlAttribute[] = [];
    const expanded = new Set<string>();
    for (const a of raw) {
      if (a.name === 'xmlns' || a.name.startsWith('xmlns:')) continue;
      const r = resolve(a.name, a.offset, false);
      const key = `${r.ns}\u0000${r.local}`;
      if (expanded.has(key)) throw new XmlSyntax(`attribute "${a.name}" repeats another attribute of the same namespace and name`, a.offset);
      expanded.add(key);
      attributes.push({ name: a.name, local: r.local, ns: r.ns, value: a.value, ...this.position(a.offset) });
    }

    const children: (XmlElement | XmlText)[] = [];
    if (!selfClosing) this.content(name, start, scope, depth, children);
    return { kind: 'element', name, local: el.local, ns: el.ns, attributes, children, ...this.position(start) };
  }

  private attribute(element: string, seen: readonly RawAttribute[]): RawAttribute {
    const offset = this.i;
    const name = this.name(`an attribute name in <${element}>`);
    if (seen.some((a) => a.name === name)) throw new XmlSyntax(`duplicate attribute "${name}" in <${element}>`, offset);
    this.space();
    if (this.text[this.i] !== '=') throw new XmlSyntax(`expected "=" after attribute "${name}", found ${this.shown()}`, this.i);
    this.i++;
    this.space();
    const quote = this.text[this.i];
    if (quote !== '"' && quote !== "'") throw new XmlSyntax(`expected a quoted value for attribute "${name}", found ${this.shown()}`, this.i);
    const valueStart = ++this.i;
    let value = '';
    let run = valueStart;
    for (;;) {
      const c = this.text[this.i];
      if (c === undefined) throw new XmlSyntax(`unterminated value of attribute "${name}"; expected ${quote}`, valueStart - 1);
      if (c === quote) break;
      if (c === '<') throw new XmlSyntax(`"<" is not allowed in an attribute value; write &lt;`, this.i);
      if (c === '&') {
        value += literal(this.text.slice(run, this.i));
        value += this.reference();
        run = this.i;
        continue;
      }
      this.i++;
    }
    value += literal(this.text.slice(run, this.i));
    this.i++; // closing quote
    return { name, value, offset };
  }

  /** An entity or character reference at "&" (XML §4.1); returns its replacement text. */
  private reference(): string {
    const start = this.i;
    const semi = this.text.indexOf(';', start);
    const body = semi < 0 || semi - start > 40 ? null : this.text.slice(start + 1, semi);
    if (body === null || body === '') throw new XmlSyntax('"&" starts no entity or character reference; write &amp; for a literal "&"', start);
    let out: string | undefined;
    if (body.startsWith('#')) {
      const m = /^#(?:([0-9]{1,7})|x([0-9A-Fa-f]{1,6}))$/.exec(body);
      const code = m === null ? NaN : m[1] !== undefined ? parseInt(m[1], 10) : parseInt(m[2]!, 16);
      if (
        !Number.isInteger(code) ||
        !(code === 0x9 || code === 0xa || code === 0xd || (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) || (code >= 0x10000 && code <= 0x10ffff))
      ) {
        throw new XmlSyntax(`&${body}; is not a character allowed in XML`, start);
      }
      out = String.fromCodePoint(code);
    } else {
      out = Object.prototype.hasOwnProperty.call(PREDEFINED, body) ? PREDEFINED[body] : undefined;
      if (out === undefined) {
        throw new XmlSyntax(`unknown entity &${body};: only &lt; &gt; &amp; &apos; &quot; and character references like &#38; are accepted (no DTD entities)`, start);
      }
    }
    this.i = semi + 1;
    return out;
  }

  /** Content up to the matching end tag (XML §3.1). */
  private content(name: string, start: number, scope: ReadonlyMap<string, string>, depth: number, children: (XmlElement | XmlText)[]): void {
    let text = '';
    let textStart = -1;
    const flush = () => {
      if (textStart >= 0) children.push({ kind: 'text', text, ...this.position(textStart) });
      text = '';
      textStart = -1;
    };
    const opened = () => {
      const p = this.position(start);
      return `<${name}> (opened at line ${p.line}, column ${p.column})`;
    };
    for (;;) {
      const c = this.text[this.i];
      if (c === undefined) throw new XmlSyntax(`unclosed element ${opened()}: end of file before </${name}>`, this.i);
      if (c === '<') {
        if (this.text.startsWith('</', this.i)) {
          const at = this.i;
          this.i += 2;
          const end = this.name('an element name in the end tag');
          this.space();
          if (this.text[this.i] !== '>') throw new XmlSyntax(`expected ">" to close the end tag </${end}>, found ${this.shown()}`, this.i);
          if (end !== name) throw new XmlSyntax(`end tag </${end}> does not match the start tag ${opened()}; expected </${name}>`, at);
          this.i++;
          flush();
          return;
        }
        if (this.text.startsWith('<!--', this.i)) {
          this.comment();
          continue;
        }
        if (this.text.startsWith('<![CDATA[', this.i)) {
          const end = this.text.indexOf(']]>', this.i + 9);
          if (end < 0) throw new XmlSyntax('unterminated CDATA section; expected "]]>"', this.i);
          if (textStart < 0) textStart = this.i;
          text += this.text.slice(this.i + 9, end);
          this.i = end + 3;
          continue;
        }
        if (this.text.startsWith('<!DOCTYPE', this.i)) throw new XmlSyntax('DOCTYPE is not accepted inside an element', this.i);
        if (this.text.startsWith('<!', this.i)) throw new XmlSyntax('unexpected "<!"; expected a comment <!-- --> or <![CDATA[ ]]>', this.i);
        if (this.text.startsWith('<?', this.i)) {
          this.pi();
          continue;
        }
        flush();
        children.push(this.element(scope, depth + 1));
        continue;
      }
      if (textStart < 0) textStart = this.i;
      if (c === '&') {
        text += this.reference();
        continue;
      }
      TEXT_STOP.lastIndex = this.i;
      const next = TEXT_STOP.exec(this.text);
      const stop = next === null ? this.text.length : next.index;
      if (this.text.startsWith(']]>', stop)) throw new XmlSyntax('"]]>" is not allowed in text (XML 1.0 §2.4); write ]]&gt;', stop);
      text += this.text.slice(this.i, stop);
      this.i = stop;
    }
  }
}

/** The child elements of `el` (text, comments dropped). */
export function childElements(el: XmlElement): XmlElement[] {
  return el.children.filter((c): c is XmlElement => c.kind === 'element');
}

/** The text content of `el` (its direct text children, concatenated). */
export function directText(el: XmlElement): string {
  let out = '';
  for (const c of el.children) if (c.kind === 'text') out += c.text;
  return out;
}
