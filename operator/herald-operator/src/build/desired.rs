//! What a pipeline becomes, as typed objects: pure functions of the validated pipeline and the
//! operator's defaults. They never touch a client and cannot fail. The Deployments are
//! [`super::workloads`]'s; the Services, the budget and the NetworkPolicies are built here, and
//! [`Children::in_order`] is the one list of them that the apply step, its ownership check and
//! the controller's watches follow.

use herald_api::labels::{self, Component};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::validate::ValidPipeline;
pub use super::workloads::{
    CONSUMER_GRACE_SECONDS, CONSUMER_METRICS_PORT, HANDOFF_TIMEOUT_SECONDS, Images, Observed, PEER_TOKEN_ANNOTATION,
    PEER_TOKEN_KEY, PRODUCER_METRICS_PORT,
};
use super::workloads::{
    CONSUMER_PORT, HTTP_PORT_NAME, METRICS_PORT_NAME, PRODUCER_PORT, consumer_deployment, meta, producer_deployment,
};

/// What the operator's flags give every pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Defaults {
    pub images: Images,
    /// The namespaces whose pods may scrape the pipelines' `/metrics`
    /// (`--metrics-namespace-selector`; empty: every namespace).
    pub metrics_namespaces: LabelSelector,
}

/// The objects of one pipeline, in the order they are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    pub producer_deployment: Deployment,
    pub producer_service: Service,
    pub consumer_deployment: Deployment,
    pub consumer_service: Service,
    pub consumer_headless_service: Service,
    pub consumer_pdb: PodDisruptionBudget,
    /// `None` with `spec.networkPolicy.enabled: false` (the operator deletes its own).
    pub producer_network_policy: Option<NetworkPolicy>,
    pub consumer_network_policy: Option<NetworkPolicy>,
}

/// A kind of namespaced child; the controller watches each (the KafkaUsers, applied first, are
/// Strimzi's and not watched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    NetworkPolicy,
    Deployment,
    Service,
    PodDisruptionBudget,
}

impl ChildKind {
    /// Every kind, each watched by the controller.
    pub const ALL: [ChildKind; 4] =
        [ChildKind::NetworkPolicy, ChildKind::Deployment, ChildKind::Service, ChildKind::PodDisruptionBudget];
}

/// One step of the apply, in [`Children::in_order`].
#[derive(Debug, Clone, PartialEq)]
pub enum Child<'a> {
    /// The KafkaUsers of the roles without a named Secret (built once the cluster's KafkaUser API
    /// is known: [`super::strimzi::kafka_users`]).
    KafkaUsers,
    NetworkPolicy(&'a NetworkPolicy),
    Deployment(Component, &'a Deployment),
    Service(&'a Service),
    PodDisruptionBudget(&'a PodDisruptionBudget),
    /// A child this spec no longer has: deleted if this pipeline made it.
    Absent {
        kind: ChildKind,
        name: String,
    },
}

impl Children {
    /// Every child, in the order it is applied — the KafkaUsers first (Strimzi writes the Secrets
    /// the pods mount), the NetworkPolicies (so that no pod runs unprotected), the Services and
    /// the budget, the consumers once the topic is ready, then the producer (whose new pod
    /// template waits for the consumers' rollout: [`super::rollout`]). The ownership check before
    /// the apply and the apply itself both follow this list.
    pub fn in_order<'a>(&'a self, pipeline: &ValidPipeline, topic_ready: bool) -> Vec<Child<'a>> {
        let mut order = Vec::with_capacity(10);
        if !pipeline.managed_users().is_empty() {
            order.push(Child::KafkaUsers);
        }
        for (component, policy) in
            [(Component::Producer, &self.producer_network_policy), (Component::Consumer, &self.consumer_network_policy)]
        {
            order.push(match policy {
                Some(policy) => Child::NetworkPolicy(policy),
                None => Child::Absent {
                    kind: ChildKind::NetworkPolicy,
                    name: labels::child_name(&pipeline.name, component),
                },
            });
        }
        for service in [&self.producer_service, &self.consumer_service, &self.consumer_headless_service] {
            order.push(Child::Service(service));
        }
        order.push(Child::PodDisruptionBudget(&self.consumer_pdb));
        if topic_ready {
            order.push(Child::Deployment(Component::Consumer, &self.consumer_deployment));
        }
        order.push(Child::Deployment(Component::Producer, &self.producer_deployment));
        order
    }
}

/// Builds every child of `pipeline`.
pub fn children(pipeline: &ValidPipeline, defaults: &Defaults, observed: &Observed) -> Children {
    let policies = pipeline.spec().network_policy.enabled;
    Children {
        producer_deployment: producer_deployment(pipeline, &defaults.images, observed),
        producer_service: service(pipeline, Component::Producer, PRODUCER_PORT, false),
        consumer_deployment: consumer_deployment(pipeline, &defaults.images, observed),
        consumer_service: service(pipeline, Component::Consumer, CONSUMER_PORT, false),
        consumer_headless_service: service(pipeline, Component::Consumer, CONSUMER_PORT, true),
        consumer_pdb: consumer_pdb(pipeline),
        producer_network_policy: policies.then(|| network_policy(pipeline, Component::Producer, defaults)),
        consumer_network_policy: policies.then(|| network_policy(pipeline, Component::Consumer, defaults)),
    }
}

fn service(pipeline: &ValidPipeline, component: Component, port: i32, headless: bool) -> Service {
    let name = pipeline.name.as_str();
    let mut service_name = labels::child_name(name, component);
    if headless {
        service_name.push_str("-headless");
    }
    Service {
        metadata: meta(pipeline, service_name, component),
        spec: Some(ServiceSpec {
            selector: Some(labels::selector(name, component)),
            ports: Some(vec![ServicePort {
                name: Some(HTTP_PORT_NAME.to_string()),
                port,
                target_port: Some(IntOrString::String(HTTP_PORT_NAME.to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            // Pods addressable one by one, ready or not (consumers find each other through it).
            cluster_ip: headless.then(|| "None".to_string()),
            publish_not_ready_addresses: headless.then_some(true),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn consumer_pdb(pipeline: &ValidPipeline) -> PodDisruptionBudget {
    let name = pipeline.name.as_str();
    PodDisruptionBudget {
        metadata: meta(pipeline, labels::child_name(name, Component::Consumer), Component::Consumer),
        spec: Some(PodDisruptionBudgetSpec {
            // One consumer at a time: each eviction is a rebalance.
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(labels::selector(name, Component::Consumer)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

/// Ingress to `component`'s pods: the API port from the pipeline's namespace (which holds the
/// other consumers, for forwarded reads) and the spec's readers or senders; the metrics port from
/// the operator's metrics namespaces. Egress (Kafka, the API server) is not restricted.
fn network_policy(pipeline: &ValidPipeline, component: Component, defaults: &Defaults) -> NetworkPolicy {
    let spec = &pipeline.spec().network_policy;
    let extra = match component {
        Component::Producer => &spec.senders,
        Component::Consumer => &spec.readers,
    };
    let port = |name: &str| NetworkPolicyPort {
        port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        ..NetworkPolicyPort::default()
    };
    let same_namespace =
        NetworkPolicyPeer { pod_selector: Some(LabelSelector::default()), ..NetworkPolicyPeer::default() };
    let api_from = std::iter::once(same_namespace)
        .chain(extra.iter().map(|p| NetworkPolicyPeer {
            namespace_selector: p.namespace_selector.clone(),
            pod_selector: p.pod_selector.clone(),
            ip_block: None,
        }))
        .collect();
    let metrics_from = NetworkPolicyPeer {
        namespace_selector: Some(defaults.metrics_namespaces.clone()),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicy {
        metadata: meta(pipeline, labels::child_name(&pipeline.name, component), component),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(labels::selector(&pipeline.name, component)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule { from: Some(api_from), ports: Some(vec![port(HTTP_PORT_NAME)]) },
                NetworkPolicyIngressRule { from: Some(vec![metrics_from]), ports: Some(vec![port(METRICS_PORT_NAME)]) },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }
}
