/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The inbound decision of docs/istio-capture.md (cases I1–I3): does a TCP connection
 * arriving at a pod address go to the proxy's inbound listener? Shared by the
 * sk_lookup program (which steers) and sockops (which marks the accepted socket
 * so that getsockopt can answer SO_ORIGINAL_DST for it).
 */
#ifndef MESHLANE_INBOUND_H
#define MESHLANE_INBOUND_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "addr.h"
#include "maps.h"
#include "meshlane.h"
#include "pod.h"

enum ml_inbound_verdict {
	ML_IN_NOT_CAPTURED = 0, /* the pod's inbound is not captured */
	ML_IN_FROM_POD = 1,	/* made inside the pod: not inbound */
	ML_IN_PORT_BYPASS = 2,	/* excluded, or not in the included ports */
	ML_IN_TO_PROXY = 3,	/* to the proxy's inbound listener */
};

static __always_inline enum ml_inbound_verdict decide_inbound(const struct ml_pod *pod,
							      __u64 netns_cookie, __u16 local_port,
							      const struct ml_addr *remote)
{
	if (!(pod->flags & ML_POD_CAPTURE_INBOUND))
		return ML_IN_NOT_CAPTURED;
	/*
	 * Connections made inside the pod are not inbound: from its loopback range
	 * (the proxy's passthrough source 127.0.0.6 / ::6 among them) or from one of
	 * its own addresses.
	 */
	if (addr_is_loopback_range(remote) || addr_is_pod_ip(pod, remote))
		return ML_IN_FROM_POD;
	/*
	 * "*": every port but the excluded ones (15008, 15020, 15021, 15090 and the
	 * pod's own). A list: exactly those ports but the tunnel port — Istio applies
	 * no exclusion in list mode.
	 */
	if (pod->flags & ML_POD_INCLUDE_ALL_INBOUND) {
		if (port_listed(netns_cookie, local_port, ML_PORTS_EXCLUDE_INBOUND))
			return ML_IN_PORT_BYPASS;
	} else if (local_port == ML_PORT_TUNNEL ||
		   !port_listed(netns_cookie, local_port, ML_PORTS_INCLUDE_INBOUND)) {
		return ML_IN_PORT_BYPASS;
	}
	return ML_IN_TO_PROXY;
}

#endif /* MESHLANE_INBOUND_H */
