// biscuit-wasm throws plain objects ({"Base64":{"InvalidLastSymbol":[6,101]}}, {"Format":{...}}): this
// says each in the product's words, for operators' messages and audit reasons alike (the one place they are worded).

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The single key of `{ Key: value }` (how the library tags a variant), or a bare string variant. */
function variant(value: unknown): [string, unknown] | undefined {
  if (typeof value === 'string') return [value, undefined];
  if (!isObject(value)) return undefined;
  const keys = Object.keys(value);
  return keys.length === 1 && keys[0] !== undefined ? [keys[0], value[keys[0]]] : undefined;
}

/** A byte the library reports by its code, shown as a character when printable. */
function byteText(code: unknown): string {
  return typeof code === 'number' && code >= 0x21 && code <= 0x7e ? `"${String.fromCharCode(code)}"` : `byte ${String(code)}`;
}

/** The description inside a protobuf decode error ("... DecodeError { description: \"buffer underflow\" ... }"). */
function decodeProblem(detail: unknown): string {
  const text = String(detail);
  return /description: \\?"([^"\\]*)/.exec(text)?.[1] ?? text.replace(/^deserialization error:\s*/, '');
}

/** A variant the mapping does not know, still without library JSON: its names and plain values. */
function names(value: unknown, depth = 0): string {
  if (depth > 3) return '…';
  if (value === null || value === undefined) return '';
  if (typeof value !== 'object') return String(value);
  if (Array.isArray(value)) return value.map((v) => names(v, depth + 1)).join(', ');
  return Object.entries(value)
    .map(([key, inner]) => [key, names(inner, depth + 1)].filter(Boolean).join(' '))
    .join('; ');
}

const base64: Record<string, (detail: unknown) => string> = {
  InvalidLastSymbol: (d) => `invalid last symbol ${byteText((d as unknown[])[1])} at ${String((d as unknown[])[0])}`,
  InvalidByte: (d) => `invalid character ${byteText((d as unknown[])[1])} at ${String((d as unknown[])[0])}`,
  InvalidLength: () => 'its length is not a possible base64 length',
  InvalidPadding: () => 'invalid padding',
};

function formatWords(name: string, detail: unknown): string {
  switch (name) {
    case 'Signature': {
      const inner = variant(detail)?.[0];
      return inner === 'InvalidSignature' ? 'a block signature is invalid' : 'a block signature is malformed';
    }
    case 'UnknownPublicKey':
      return 'it is signed by an unknown root key';
    case 'DeserializationError':
      return `its bytes do not decode as a Biscuit (${decodeProblem(detail)})`;
    case 'BlockDeserializationError':
      return `a block does not decode (${decodeProblem(detail)})`;
    case 'InvalidKey':
      return `not a valid key (${String(detail)})`;
    case 'InvalidKeySize':
      return `a key has the wrong size (${String(detail)} bytes)`;
    case 'InvalidSignatureSize':
      return `a signature has the wrong size (${String(detail)} bytes)`;
    case 'Version':
      return isObject(detail) ? `unsupported token format version ${String(detail.actual)} (this gateway reads ${String(detail.minimum)} to ${String(detail.maximum)})` : 'unsupported token format version';
    default:
      return `malformed token (${names({ [name]: detail })})`;
  }
}

function parseErrors(detail: unknown): string {
  const errors = isObject(detail) && Array.isArray(detail.errors) ? (detail.errors as unknown[]) : [];
  const first = errors.find(isObject);
  if (!first) return 'Datalog does not parse';
  const input = typeof first.input === 'string' ? first.input.split('\n')[0]?.slice(0, 60) ?? '' : '';
  return `Datalog does not parse${input ? ` near "${input}"` : ' at the end'}${typeof first.message === 'string' && first.message ? `: ${first.message}` : ''}`;
}

/** One line in the product's words for what biscuit-wasm threw (an Error keeps its message). */
export function biscuitErrorWords(error: unknown): string {
  if (error instanceof Error) return error.name === 'Error' ? error.message : `${error.name}: ${error.message}`;
  if (typeof error === 'string') return error;
  const top = variant(error);
  if (!top) return names(error) || 'unknown error from the token library';
  const [name, detail] = top;
  const inner = variant(detail);
  switch (name) {
    case 'Base64': {
      const words = inner === undefined ? undefined : base64[inner[0]];
      return `not valid base64url text (${words && inner ? words(inner[1]) : names(detail)})`;
    }
    case 'Format':
      return inner ? formatWords(inner[0], inner[1]) : 'malformed token';
    case 'InvalidKey':
      return `not a valid key (${String(detail)})`;
    case 'AppendOnSealed':
    case 'AlreadySealed':
      return 'the token is sealed: no block can be appended';
    case 'Language':
      return inner?.[0] === 'ParseError' ? parseErrors(inner[1]) : `Datalog error (${names(detail)})`;
    case 'RunLimit':
      return `run limit reached (${names(detail)})`;
    case 'Execution':
      return `Datalog evaluation error (${names(detail)})`;
    default:
      return names(error);
  }
}
