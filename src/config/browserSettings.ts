// The `browser:` block of routes.yaml: where browsers sign in when services have origins of their own,
// and how long a session lasts.
import { z } from 'zod';

export const browserSettingsSchema = z
  .object({
    /**
     * Host name of the gateway's own origin (e.g. `gateway.example.org`): a browser reaching a service on
     * another host (a host-templated route) signs in there and is handed a session for that host.
     */
    portalHost: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/, 'a host name, without port or scheme').optional(),
    /** Session lifetime in seconds (default 8 h); a session never outlives its token. */
    sessionSeconds: z.number().int().min(60).max(7 * 24 * 3600).optional(),
  })
  .strict();

export type BrowserSettings = z.infer<typeof browserSettingsSchema>;
