// The fetch the relying party talks to the site's OpenID provider with: the system's CAs, or only the
// CA bundle issuer.provider.ca names (a site CA), so a private IdP is reached without trusting more.
import { Agent, fetch as undiciFetch } from 'undici';

export interface ProviderFetch {
  fetch: typeof fetch;
  close(): Promise<void>;
}

/** `caPem`: PEM bundle to trust instead of the system's CAs; absent = the global fetch. */
export function providerFetch(caPem?: string): ProviderFetch {
  if (caPem === undefined) return { fetch: globalThis.fetch, close: async () => {} };
  const dispatcher = new Agent({ connect: { ca: caPem } });
  // undici's fetch and the global one differ only in their types (the global one is undici's own).
  const trusting = ((input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => undiciFetch(input as never, { ...(init as object), dispatcher } as never)) as unknown as typeof fetch;
  return { fetch: trusting, close: () => dispatcher.close() };
}
