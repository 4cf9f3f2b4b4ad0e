import { describe, expect, it } from 'vitest';
import { LabelConfigError, LabelTable } from '../../src/core/labels.js';
import { Policy, parsePolicyRule } from '../../src/core/policy.js';

const labels = new LabelTable([
  { name: 'red', vlan: 100 },
  { name: 'blue', vlan: 200 },
  { name: 'audit', vlan: 300 },
  { name: 'mgmt-net', vlan: 400 },
]);
const RED = labels.idOf('red');
const BLUE = labels.idOf('blue');
const AUDIT = labels.idOf('audit');
const MGMT = labels.idOf('mgmt-net');

function configError(fn: () => unknown): LabelConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(LabelConfigError);
    return e as LabelConfigError;
  }
  throw new Error('expected a LabelConfigError, nothing was thrown');
}

describe('parsePolicyRule', () => {
  it('parses the string form with any spacing and names containing - and .', () => {
    expect(parsePolicyRule('allow red -> audit')).toEqual({ from: 'red', to: 'audit' });
    expect(parsePolicyRule('  allow   mgmt-net->a.b  ')).toEqual({ from: 'mgmt-net', to: 'a.b' });
    expect(parsePolicyRule('allow a-b->c')).toEqual({ from: 'a-b', to: 'c' });
  });

  it('parses the object form', () => {
    expect(parsePolicyRule({ from: 'red', to: 'audit' })).toEqual({ from: 'red', to: 'audit' });
  });

  for (const bad of ['deny red -> audit', 'allow red audit', 'allow red <- audit', 'allow -> audit', 'allow red -> audit extra', '', 42, null, { from: 'red' }, ['red', 'audit']]) {
    it(`rejects ${JSON.stringify(bad)}`, () => {
      const e = configError(() => parsePolicyRule(bad, 'policy[3]'));
      expect(e.code).toBe('policy_rule_invalid');
      expect(e.path).toBe('policy[3]');
      expect(e.message).toMatch(/^policy\[3\]: .* is not a rule "allow FROM -> TO" or \{from, to\}$/);
    });
  }
});

describe('Policy', () => {
  it('denies every pair of different labels by default and admits each label to itself', () => {
    const p = new Policy(labels);
    for (let a = 0; a < labels.size; a++) {
      for (let b = 0; b < labels.size; b++) expect(p.admits(a, b), `${a} -> ${b}`).toBe(a === b);
    }
  });

  it('applies rules one way only: red -> audit allowed, audit -> red denied', () => {
    const p = new Policy(labels, ['allow red -> audit', { from: 'blue', to: 'audit' }]);
    expect(p.admits(RED, AUDIT)).toBe(true);
    expect(p.admits(AUDIT, RED)).toBe(false);
    expect(p.admits(BLUE, AUDIT)).toBe(true);
    expect(p.admits(AUDIT, BLUE)).toBe(false);
    expect(p.admits(RED, BLUE)).toBe(false);
    expect(p.admits(BLUE, RED)).toBe(false);
    expect(p.admits(RED, MGMT)).toBe(false);
    expect(p.admits(AUDIT, AUDIT)).toBe(true);
    expect(p.toStrings()).toEqual(['allow red -> audit', 'allow blue -> audit']);
  });

  it('matches the rule list exactly for every pair', () => {
    const rules = ['allow red -> audit', 'allow mgmt-net -> red', 'allow mgmt-net -> blue', 'allow red -> audit'];
    const p = new Policy(labels, rules);
    const allowed = new Set(rules.map((r) => parsePolicyRule(r)).map((r) => `${labels.idOf(r.from)}>${labels.idOf(r.to)}`));
    for (let a = 0; a < labels.size; a++) {
      for (let b = 0; b < labels.size; b++) expect(p.admits(a, b)).toBe(a === b || allowed.has(`${a}>${b}`));
    }
  });

  it('denies label ids out of range', () => {
    const p = new Policy(labels, ['allow red -> audit']);
    expect(p.admits(-1, RED)).toBe(false);
    expect(p.admits(RED, labels.size)).toBe(false);
    expect(p.admits(0.5, 0)).toBe(false);
    expect(p.admits(Number.NaN, 0)).toBe(false);
  });

  it('rejects rules naming unknown labels, with the rule index and side', () => {
    let e = configError(() => new Policy(labels, ['allow red -> audit', 'allow green -> red']));
    expect(e.code).toBe('policy_label_unknown');
    expect(e.message).toBe('policy[1].from: "green" is not a configured label (labels: red, blue, audit, mgmt-net)');
    e = configError(() => new Policy(labels, [{ from: 'red', to: 'Audit' }]));
    expect(e.message).toBe('policy[0].to: "Audit" is not a configured label (labels: red, blue, audit, mgmt-net)');
  });

  it('rejects a malformed rule with its index', () => {
    const e = configError(() => new Policy(labels, ['allow red -> audit', 'allow red => blue']));
    expect(e.code).toBe('policy_rule_invalid');
    expect(e.path).toBe('policy[1]');
  });
});
