// The `issuer:` block of routes.yaml: the issuer's signing key and name, the site's OpenID provider,
// and the claim rules (which claim is the user, which gives groups, what each group may receive).
import { z } from 'zod';
import { parseTtl } from '../token/duration.ts';

const duration = z
  .string()
  .regex(/^\d{1,9}[smhd]$/, 'a duration such as 30m, 8h or 1d')
  .refine((text) => parseTtl(text).ok, 'at most 366 days');

/** Same rules as route names and token group names (src/token/names.ts). */
const routeOrAny = z.string().regex(/^(\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,127})$/, 'a route name, or "*" for any route');
const serviceOrAny = z.string().regex(/^(\*|[a-z0-9][a-z0-9_-]{0,62})$/, 'a service name (lower case letters, digits, _ -), or "*" for any');
const groupName = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
const claimName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/, 'a claim name such as preferred_username');

/** What members of one IdP group may receive in a token. */
const groupGrantSchema = z
  .object({
    /** Routes the token may be used on (`check if route(...)`); `"*"` = any route whose policy accepts the user. */
    routes: z.array(routeOrAny).min(1),
    /** Services the token may publish with `gatehouse publish` (`"*"` = any); absent = none. */
    publish: z.array(serviceOrAny).min(1).optional(),
    /** Longest lifetime of a token carrying this group; a token with several groups gets the shortest. */
    maxTtl: duration.optional(),
  })
  .strict();

export const issuerSettingsSchema = z
  .object({
    /** The signer name route policies see as `signer("<name>")`; gateways accept the issuer's tokens when authz.issuers lists it. */
    name: z.string().regex(/^[a-z][a-z0-9_]*$/, 'lower case letters, digits and _').refine((name) => name !== 'root', '"root" names the root key'),
    /** The root key id written into every token it signs (authz.issuers.<name>.keyId on the gateways). */
    keyId: z.number().int().min(0).max(0xffff_ffff),
    /** File with the issuer's private key, `ed25519-private/<hex>` (mode 0600); never the token root key. */
    signingKey: z.string().min(1),
    /** The site's OpenID provider: discovery at `<url>/.well-known/openid-configuration`. */
    provider: z
      .object({
        url: z.string().regex(/^https:\/\/[^\s#?]+$/, 'an https:// URL (the OpenID issuer)'),
        clientId: z.string().min(1).max(256),
        /** File holding the client secret of a confidential client; absent = a public client (device flow, PKCE). */
        clientSecretFile: z.string().min(1).optional(),
        /** Longest wait for one answer of the IdP (discovery, device start and poll, code exchange): then the login is refused 503. */
        timeoutSeconds: z.number().int().min(1).max(120).default(10),
        /** PEM CA bundle the provider's HTTPS certificate must chain to (a site CA); absent = the system's CAs. */
        ca: z.string().min(1).optional(),
        /** Shown on the sign-in page's button, "Sign in with <displayName>" (default "your identity provider"). */
        displayName: z.string().regex(/^[^\x00-\x1f\x7f]{1,64}$/, 'up to 64 characters, no control characters').optional(),
        /** The browser sign-in's redirect URI, registered exactly at the provider; default https://<browser.portalHost or the request's host>/.well-known/gatehouse/login/callback. */
        redirectUri: z.string().regex(/^https:\/\/[^\s/?#@]+\/\.well-known\/gatehouse\/login\/callback$/, 'https://<gateway host[:port]>/.well-known/gatehouse/login/callback').optional(),
      })
      .strict(),
    claims: z
      .object({
        /** The claim that names the user (`user(...)` in the token). */
        user: claimName.default('preferred_username'),
        /** The claim that lists the user's groups (an array of names, or one name). */
        groups: claimName.default('groups'),
      })
      .strict()
      .prefault({}),
    /**
     * The IdP user must hold the client certificate presented at login: this claim (default: the user
     * claim) must equal the certificate's `cn` or one of its `email` subject alternative names; `none` turns it off.
     */
    certificate: z
      .object({
        field: z.enum(['cn', 'email', 'none']).default('cn'),
        claim: claimName.optional(),
      })
      .strict()
      .prefault({}),
    /** Lifetime of an issued token (default 12h), cut by the groups' maxTtl and the IdP session. */
    ttl: duration.default('12h'),
    /**
     * How long after the IdP login a token may be refreshed without logging in again (each refresh gives a
     * token of the login's lifetime, never past this nor past the IdP session's end); 0 = never.
     */
    refreshLimit: z.union([z.literal(0), duration]).default('7d'),
    /** Device logins (`gatehouse login`) waiting for the user's approval: in all, and per client certificate. */
    device: z
      .object({
        maxPending: z.number().int().min(1).max(1_000_000).default(10_000),
        /** A certificate starting more drops its own oldest pending login. */
        maxPendingPerCertificate: z.number().int().min(1).max(1000).default(4),
      })
      .strict()
      .prefault({}),
    /**
     * Short-lived client certificates for users without one (a CSR sent with the device login): the issuing
     * CA (certificate and its ECDSA P-256 key, mode 0600, kept with the issuer), their lifetime and its cap.
     * Set, the gateway's listeners also accept connections without a client certificate, for the login alone.
     */
    certificates: z
      .object({
        ca: z.string().min(1),
        caKey: z.string().min(1),
        /** Lifetime of an issued certificate (default 12h), cut by maxTtl, the token's lifetime and the IdP session. */
        ttl: duration.default('12h'),
        maxTtl: duration.optional(),
      })
      .strict()
      .optional(),
    /** IdP groups that may receive tokens, and what each may receive; a group not listed gets nothing. */
    groups: z.record(z.string().regex(groupName, 'a group name: letters, digits and . _ @ + -'), groupGrantSchema).refine((g) => Object.keys(g).length > 0, 'at least one group'),
  })
  .strict();

export type IssuerSettings = z.infer<typeof issuerSettingsSchema>;
export type GroupGrant = z.infer<typeof groupGrantSchema>;
