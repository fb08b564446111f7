//! The authorised-operations bit fields that Metadata, DescribeCluster and DescribeGroups report
//! when a client asks for them (`include_*_authorized_operations`, KIP-430).
//!
//! Sluice has no authoriser, so, as Kafka does without one, every operation a resource type
//! supports is reported as allowed (Kafka's `AclEntry.supportedOperations`). Bit `n` stands for
//! the AclOperation with code `n`.

/// Kafka's AclOperation codes (org.apache.kafka.common.acl.AclOperation).
const READ: u8 = 3;
const WRITE: u8 = 4;
const CREATE: u8 = 5;
const DELETE: u8 = 6;
const ALTER: u8 = 7;
const DESCRIBE: u8 = 8;
const CLUSTER_ACTION: u8 = 9;
const DESCRIBE_CONFIGS: u8 = 10;
const ALTER_CONFIGS: u8 = 11;
const IDEMPOTENT_WRITE: u8 = 12;

/// What a response carries when the client did not ask for the operations (Kafka's
/// `Integer.MIN_VALUE`, "not requested").
pub const NOT_REQUESTED: i32 = i32::MIN;

const fn bit_field(operations: &[u8]) -> i32 {
    let mut field = 0;
    let mut i = 0;
    while i < operations.len() {
        field |= 1 << operations[i];
        i += 1;
    }
    field
}

/// Every operation on a topic.
pub const TOPIC: i32 = bit_field(&[
    READ,
    WRITE,
    CREATE,
    DESCRIBE,
    DELETE,
    ALTER,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
]);

/// Every operation on the cluster.
pub const CLUSTER: i32 = bit_field(&[
    CREATE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
    ALTER,
    DESCRIBE,
]);

/// Every operation on a consumer group.
pub const GROUP: i32 = bit_field(&[READ, DESCRIBE, DELETE]);

/// `operations` if the client asked for them, otherwise [`NOT_REQUESTED`].
pub fn if_requested(included: bool, operations: i32) -> i32 {
    if included {
        operations
    } else {
        NOT_REQUESTED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_fields_are_kafkas_without_an_authoriser() {
        // The values a Kafka 3.x/4.x broker without an authoriser reports.
        assert_eq!(TOPIC, 3576);
        assert_eq!(CLUSTER, 8096);
        assert_eq!(GROUP, 328);
    }
}
