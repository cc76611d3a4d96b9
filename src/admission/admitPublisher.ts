// Admission of a publisher: the site's `publish:` policy decides, for each service it registers, with
// the token's facts, the certificate's, `service(name)` and `source_ip`. The name space is the token's user.
import { PUBLISH_ROUTE } from '../routing/reservedPaths.ts';
import type { Decision, RequestAuthorizer } from '../authz/types.ts';
import type { PublishConfig, RunLimits } from '../config/schema.ts';
import type { PeerIdentity } from '../tls/peerIdentity.ts';
import { refuse, refusalOf, type Refusal } from '../errors/refusal.ts';

export interface PublisherRequest {
  identity: PeerIdentity;
  sourceIp: string;
  token: string | undefined;
  services: readonly string[];
}

export type PublisherAdmission =
  | { allow: true; decision: Extract<Decision, { allow: true }> }
  | { allow: false; refusal: Refusal; decision?: Decision };

/** Every service must be allowed; the first refusal refuses the whole registration, naming the service. */
export async function admitPublisher(authorizer: RequestAuthorizer, publish: PublishConfig | undefined, limits: RunLimits, req: PublisherRequest): Promise<PublisherAdmission> {
  if (!publish) return { allow: false, refusal: refuse('GH_PUBLISH_DISABLED', 'routes.yaml has no publish: block') };
  let allowed: Extract<Decision, { allow: true }> | undefined;
  for (const service of req.services) {
    const decision = await authorizer.authorize(req.token, { name: PUBLISH_ROUTE, policy: publish.policy, limits }, {
      time: new Date(),
      protocol: 'publish',
      params: {},
      sourceIp: req.sourceIp,
      client: req.identity,
      service,
    });
    if (!decision.allow) {
      const clientReason = decision.status === 403 ? `not allowed to publish ${service}` : decision.clientReason;
      return { allow: false, refusal: { ...refusalOf(decision), clientReason, reason: `publish ${service}: ${decision.reason}` }, decision };
    }
    allowed = decision;
  }
  if (!allowed) return { allow: false, refusal: refuse('GH_NO_SERVICES', 'the publisher named no services') };
  return { allow: true, decision: allowed };
}
