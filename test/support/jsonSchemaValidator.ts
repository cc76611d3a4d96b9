// Validates JSON documents against a JSON Schema (draft-07) with Debian's python3-jsonschema, a maintained
// validator, run as a child process: the tests check the schema with a validator other than its generator.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const python = '/usr/bin/python3';

/** Reads {"schema", "documents": {name: document}} on stdin; prints {name: ["path: message", ...]}. */
const script = `
import json, sys
from jsonschema import Draft7Validator
request = json.load(sys.stdin)
Draft7Validator.check_schema(request["schema"])
validator = Draft7Validator(request["schema"])
result = {}
for name, document in request["documents"].items():
    result[name] = sorted("/".join(str(p) for p in e.absolute_path) + ": " + e.message for e in validator.iter_errors(document))
json.dump(result, sys.stdout)
`;

/** Why the validator cannot run here, or undefined when it can. */
export function jsonSchemaValidatorMissing(): string | undefined {
  if (!existsSync(python)) return `${python} not installed`;
  const probe = spawnSync(python, ['-c', 'import jsonschema'], { encoding: 'utf8' });
  return probe.status === 0 ? undefined : 'python3-jsonschema not installed (Debian package python3-jsonschema)';
}

/** Every error of every document, by document name: an empty list means the document is valid. */
export function validateWithJsonSchema(schema: unknown, documents: Record<string, unknown>): Record<string, string[]> {
  const run = spawnSync(python, ['-c', script], { input: JSON.stringify({ schema, documents }), encoding: 'utf8', maxBuffer: 64 << 20 });
  if (run.status !== 0) throw new Error(`jsonschema failed (${run.status ?? run.signal}): ${run.stderr}`);
  return JSON.parse(run.stdout) as Record<string, string[]>;
}
