// X-Amzn-Trace-Id as the ALB adds it (njs, loaded by kube-credential.conf.template):
// the client's own header unchanged when it sent one, else a new
// Root=1-<8 hex digits of epoch seconds>-<24 hex digits>. The 24 digits come from
// nginx's $request_id (32 random hex digits per request).
function traceId(r) {
    const given = r.headersIn['X-Amzn-Trace-Id'];
    if (given) {
        return given;
    }
    const epoch = Math.floor(Date.now() / 1000).toString(16).padStart(8, '0');
    return `Root=1-${epoch}-${r.variables.request_id.slice(0, 24)}`;
}

export default { traceId };
