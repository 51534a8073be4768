"""Beyond one machine: the Kubernetes manifests' checks (manifests), N replicas behind a load
balancer on one host with a rolling update and a killed replica under load (replicas, haproxy),
and the capacity plan from measured numbers (capacity). docs/kubernetes.md, docs/capacity.md.
"""
