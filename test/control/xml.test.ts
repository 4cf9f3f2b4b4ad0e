// The strict XML reader (src/control/xml.ts): what libvirt files contain parses
// with positions and namespaces; everything else is refused with a message
// naming the file, line and column.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/control/config-errors.js';
import { childElements, directText, parseXml, readXmlFile, XML_MAX_BYTES, XML_NAMESPACE, type XmlElement } from '../../src/control/xml.js';

const TEMP_DIRS: string[] = [];
/** A fresh folder under the system temp folder, removed after the file's tests. */
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  TEMP_DIRS.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of TEMP_DIRS) rmSync(d, { recursive: true, force: true });
});


const FILE = '/etc/libvirt/qemu/web1.xml';

function syntaxError(text: string): ConfigError {
  try {
    parseXml(text, FILE);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).code).toBe('CONFIG_SYNTAX');
    return e as ConfigError;
  }
  throw new Error('expected a syntax error');
}

describe('parseXml: accepted documents', () => {
  it('reads elements, attributes, text and positions', () => {
    const { root } = parseXml("<?xml version='1.0' encoding='UTF-8'?>\n<domain type='kvm' id=\"3\">\n  <name>web1</name>\n  <devices/>\n</domain>\n", FILE);
    expect(root.name).toBe('domain');
    expect(root.ns).toBe('');
    expect(root.attributes.map((a) => [a.name, a.value, a.line, a.column])).toEqual([
      ['type', 'kvm', 2, 9],
      ['id', '3', 2, 20],
    ]);
    const [name, devices] = childElements(root);
    expect([name!.local, directText(name!), name!.line, name!.column]).toEqual(['name', 'web1', 3, 3]);
    expect([devices!.local, devices!.children.length, devices!.line]).toEqual(['devices', 0, 4]);
  });

  it('expands the five predefined entities and character references, in text and attributes', () => {
    const { root } = parseXml(`<a t="&lt;&gt;&amp;&apos;&quot;&#65;&#x42;&#x1F600;">x &amp; y &#x3C;z&#62;</a>`, FILE);
    expect(root.attributes[0]!.value).toBe(`<>&'"AB\u{1F600}`);
    expect(directText(root)).toBe('x & y <z>');
  });

  it('keeps CDATA verbatim and merges it with neighbouring text', () => {
    const { root } = parseXml('<a>one <![CDATA[<b>&amp;</b>]]> two</a>', FILE);
    expect(root.children).toHaveLength(1);
    expect(directText(root)).toBe('one <b>&amp;</b> two');
  });

  it('drops comments and processing instructions', () => {
    const { root } = parseXml('<!-- head --><?xml-stylesheet href="x"?><a><!-- in -->t<?pi data?>u</a><!-- tail -->', FILE);
    expect(directText(root)).toBe('tu');
    expect(childElements(root)).toEqual([]);
  });

  it('normalises line ends (CR LF, CR) and literal white space in attribute values, not character references', () => {
    const { root } = parseXml('<a\r\n x="1\t2\n3&#10;4"\r>\r\n<b/></a>', FILE);
    expect(root.attributes[0]!.value).toBe('1 2 3\n4');
    expect(directText(root)).toBe('\n');
    expect(childElements(root)[0]!.line).toBe(5);
  });

  it('resolves namespaces: prefixed, default, nested redeclaration, the xml prefix; unprefixed attributes have none', () => {
    const { root } = parseXml(
      `<domain><metadata>
         <st:label xmlns:st="https://sectunnel.dev/xmlns/1" st:interface="vnet0" dev="x">red</st:label>
         <label xmlns="https://example.com/other"><inner/></label>
         <st:x xmlns:st="urn:other" xml:lang="en"/>
       </metadata></domain>`,
      FILE,
    );
    const [st, other, x] = childElements(childElements(root)[0]!) as [XmlElement, XmlElement, XmlElement];
    expect([st.name, st.local, st.ns]).toEqual(['st:label', 'label', 'https://sectunnel.dev/xmlns/1']);
    expect(st.attributes.map((a) => [a.local, a.ns])).toEqual([
      ['interface', 'https://sectunnel.dev/xmlns/1'],
      ['dev', ''],
    ]);
    expect([other.ns, childElements(other)[0]!.ns]).toEqual(['https://example.com/other', 'https://example.com/other']);
    expect([x.ns, x.attributes[0]!.ns]).toEqual(['urn:other', XML_NAMESPACE]);
    expect(root.ns).toBe('');
  });

  it('accepts a byte order mark through readXmlFile, and UTF-8 text', async () => {
    const dir = tempDir('st-xml-');
    const p = join(dir, 'bom.xml');
    writeFileSync(p, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('<a>grüße</a>')]));
    expect(directText((await readXmlFile(p)).root)).toBe('grüße');
  });
});

describe('parseXml: refused documents name line and column', () => {
  const cases: [string, string, string][] = [
    ['unclosed tag at end of file', '<domain>\n  <name>web1</name>\n', `${FILE}:3:1: syntax error: unclosed element <domain> (opened at line 1, column 1): end of file before </domain>`],
    ['mismatched end tag', '<a>\n  <b></c>\n</a>', `${FILE}:2:6: syntax error: end tag </c> does not match the start tag <b> (opened at line 2, column 3); expected </b>`],
    ['unclosed start tag', '<a x="1"', `${FILE}:1:1: syntax error: unclosed start tag <a>; expected ">" or "/>"`],
    ['unknown entity', '<a>\n  AT&T;</a>', `${FILE}:2:5: syntax error: unknown entity &T;: only &lt; &gt; &amp; &apos; &quot; and character references like &#38; are accepted (no DTD entities)`],
    ['bare ampersand', '<a>fish & chips</a>', `${FILE}:1:9: syntax error: "&" starts no entity or character reference; write &amp; for a literal "&"`],
    ['character reference to a forbidden character', '<a>&#0;</a>', `${FILE}:1:4: syntax error: &#0; is not a character allowed in XML`],
    ['DOCTYPE', '<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/shadow">]>\n<d>&x;</d>', `${FILE}:2:1: syntax error: DOCTYPE is not accepted: no DTDs, entity declarations or external entities (libvirt XML never needs one)`],
    ['duplicate attribute', "<a x='1' x='2'/>", `${FILE}:1:10: syntax error: duplicate attribute "x" in <a>`],
    ['same expanded attribute name', "<a xmlns:p='u' xmlns:q='u' p:x='1' q:x='2'/>", `${FILE}:1:36: syntax error: attribute "q:x" repeats another attribute of the same namespace and name`],
    ['undeclared prefix', '<a>\n <st:label>red</st:label></a>', `${FILE}:2:3: syntax error: the namespace prefix "st" of "st:label" is not declared (add xmlns:st="…")`],
    ['unquoted attribute value', '<a x=1/>', `${FILE}:1:6: syntax error: expected a quoted value for attribute "x", found "1"`],
    ['"<" in an attribute value', '<a x="a<b"/>', `${FILE}:1:8: syntax error: "<" is not allowed in an attribute value; write &lt;`],
    ['attributes without white space between', '<a x="1"y="2"/>', `${FILE}:1:9: syntax error: expected white space, ">" or "/>" in <a>, found "y"`],
    ['two root elements', '<a/>\n<b/>', `${FILE}:2:1: syntax error: a second root element; an XML document has exactly one`],
    ['text after the root', '<a/> x', `${FILE}:1:6: syntax error: text after the root element`],
    ['empty document', '  <!-- only a comment -->\n', `${FILE}:2:1: syntax error: no root element: the document is empty`],
    ['text before the root', 'hello <a/>', `${FILE}:1:1: syntax error: text outside the root element; expected "<"`],
    ['"--" in a comment', '<a><!-- a -- b --></a>', `${FILE}:1:11: syntax error: "--" is not allowed inside a comment (XML 1.0 §2.5)`],
    ['unterminated comment', '<a><!-- a </a>', `${FILE}:1:4: syntax error: unterminated comment; expected "-->"`],
    ['unterminated CDATA', '<a><![CDATA[ x </a>', `${FILE}:1:4: syntax error: unterminated CDATA section; expected "]]>"`],
    ['"]]>" in text', '<a>x ]]> y</a>', `${FILE}:1:6: syntax error: "]]>" is not allowed in text (XML 1.0 §2.4); write ]]&gt;`],
    ['a control character', '<a>\u0001</a>', `${FILE}:1:4: syntax error: character U+0001 is not allowed in XML (XML 1.0 §2.2)`],
    ['a non-UTF-8 encoding declared', "<?xml version='1.0' encoding='ISO-8859-1'?><a/>", `${FILE}:1:31: syntax error: encoding "ISO-8859-1" is not supported; only UTF-8`],
    ['an XML declaration not at the start', ' <?xml version="1.0"?><a/>', `${FILE}:1:2: syntax error: an XML declaration is allowed only at the very start of the file`],
    ['a name with two colons', '<a:b:c/>', `${FILE}:1:2: syntax error: "a:b:c" is not a valid name with namespaces (at most one ":", not first or last)`],
    ['binding a prefix to the empty namespace', "<a xmlns:p=''/>", `${FILE}:1:4: syntax error: the prefix "p" cannot be bound to the empty namespace (XML Namespaces 1.0)`],
    ['a start tag with no name', '<a>< b/></a>', `${FILE}:1:5: syntax error: expected an element name, found " "`],
  ];
  for (const [what, text, message] of cases) {
    it(what, () => {
      expect(syntaxError(text).message).toBe(message);
    });
  }

  it('refuses nesting deeper than the limit', () => {
    const deep = '<a>'.repeat(200) + '</a>'.repeat(200);
    expect(syntaxError(deep).message).toMatch(/^\/etc\/libvirt\/qemu\/web1\.xml:1:385: syntax error: elements nested deeper than 128 levels$/);
  });

  it('readXmlFile: missing file, directory, too large, not UTF-8', async () => {
    const dir = tempDir('st-xml-');
    const read = async (p: string) => {
      try {
        await readXmlFile(p);
      } catch (e) {
        return e as ConfigError;
      }
      throw new Error('expected an error');
    };
    expect((await read(join(dir, 'nope.xml'))).message).toBe(`${join(dir, 'nope.xml')}: cannot read XML file: no such file`);
    expect((await read(dir)).message).toBe(`${dir}: cannot read XML file: is a directory, expected a file`);
    const big = join(dir, 'big.xml');
    writeFileSync(big, `<a>${' '.repeat(XML_MAX_BYTES)}</a>`);
    expect((await read(big)).message).toBe(`${big}: cannot read XML file: it is ${XML_MAX_BYTES + 7} bytes; the limit is ${XML_MAX_BYTES} bytes (1 MiB)`);
    const latin1 = join(dir, 'latin1.xml');
    writeFileSync(latin1, Buffer.from([0x3c, 0x61, 0x3e, 0xfc, 0x3c, 0x2f, 0x61, 0x3e]));
    const e = await read(latin1);
    expect([e.code, e.message]).toEqual(['CONFIG_SYNTAX', `${latin1}: syntax error: the file is not UTF-8 text`]);
  });
});
