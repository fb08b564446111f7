//! Errors returned by the native client.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;
use kafka_protocol::ResponseError;

/// Every fallible client operation returns this.
pub type Result<T> = std::result::Result<T, ClientError>;

/// An error code returned by the broker, with the request context it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub error: ResponseError,
    /// The broker's optional human-readable message (`error_message` fields).
    pub message: Option<String>,
    /// What we asked for, e.g. `create topic "orders"`.
    pub context: String,
}

impl KafkaError {
    pub fn new(code: i16, message: Option<String>, context: impl Into<String>) -> Option<Self> {
        let error = ResponseError::try_from_code(code)?;
        Some(KafkaError {
            error,
            message,
            context: context.into(),
        })
    }

    pub fn code(&self) -> i16 {
        self.error.code()
    }

    /// The error's name as Kafka spells it, e.g. `TOPIC_ALREADY_EXISTS`.
    pub fn name(&self) -> String {
        error_name(self.error)
    }
}

impl std::fmt::Display for KafkaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.context, self.name(), self.code())?;
        if let Some(message) = &self.message {
            if !message.is_empty() {
                write!(f, ": {message}")?;
            }
        }
        Ok(())
    }
}

/// Kafka's upper snake case name of an error (`TopicAlreadyExists` -> `TOPIC_ALREADY_EXISTS`).
pub fn error_name(error: ResponseError) -> String {
    if let ResponseError::Unknown(code) = error {
        return format!("UNKNOWN_ERROR_CODE_{code}");
    }
    let camel = error.to_string();
    let mut name = String::with_capacity(camel.len() + 8);
    for (index, character) in camel.chars().enumerate() {
        if character.is_ascii_uppercase() && index > 0 {
            name.push('_');
        }
        name.push(character.to_ascii_uppercase());
    }
    name
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection to {address}: {source}")]
    Io {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("frame of {frame_bytes} bytes is outside the allowed range 0..={frame_bytes_max}")]
    FrameSize {
        frame_bytes: i64,
        frame_bytes_max: usize,
    },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("broker supports no version of {api:?} that this client implements ({ours})")]
    UnsupportedApi { api: ApiKey, ours: VersionRange },
    #[error("{0}")]
    Kafka(KafkaError),
    /// A record larger than the producer's request size limit.
    #[error("record of {record_bytes} bytes exceeds the request limit of {request_bytes_max}")]
    RecordTooLarge {
        record_bytes: usize,
        request_bytes_max: usize,
    },
    /// The producer could not take a record in time: its buffer stayed full, or the topic's
    /// metadata did not arrive.
    #[error("producer timed out: {0}")]
    Timeout(String),
    /// The producer is closed, or failed for good.
    #[error("producer closed: {0}")]
    Closed(String),
    /// Settings that cannot work together, e.g. idempotence with acks other than all.
    #[error("invalid client settings: {0}")]
    Config(String),
}

impl ClientError {
    /// The broker's error code, when the failure is one.
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            ClientError::Kafka(error) => Some(error.error),
            _ => None,
        }
    }

    /// An equal error, for each of several batches that failed together (`std::io::Error` is
    /// not `Clone`; the copy keeps its kind and message).
    pub fn duplicate(&self) -> ClientError {
        match self {
            ClientError::Io { address, source } => ClientError::Io {
                address: address.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            ClientError::FrameSize {
                frame_bytes,
                frame_bytes_max,
            } => ClientError::FrameSize {
                frame_bytes: *frame_bytes,
                frame_bytes_max: *frame_bytes_max,
            },
            ClientError::Protocol(message) => ClientError::Protocol(message.clone()),
            ClientError::UnsupportedApi { api, ours } => ClientError::UnsupportedApi {
                api: *api,
                ours: *ours,
            },
            ClientError::Kafka(error) => ClientError::Kafka(error.clone()),
            ClientError::RecordTooLarge {
                record_bytes,
                request_bytes_max,
            } => ClientError::RecordTooLarge {
                record_bytes: *record_bytes,
                request_bytes_max: *request_bytes_max,
            },
            ClientError::Timeout(message) => ClientError::Timeout(message.clone()),
            ClientError::Closed(message) => ClientError::Closed(message.clone()),
            ClientError::Config(message) => ClientError::Config(message.clone()),
        }
    }

    pub(crate) fn protocol(message: impl std::fmt::Display) -> Self {
        ClientError::Protocol(message.to_string())
    }
}

impl From<KafkaError> for ClientError {
    fn from(error: KafkaError) -> Self {
        ClientError::Kafka(error)
    }
}

/// Turns a non-zero error code into `Err(ClientError::Kafka)`.
pub(crate) fn check_code(
    code: i16,
    message: Option<&str>,
    context: impl FnOnce() -> String,
) -> Result<()> {
    match KafkaError::new(code, message.map(str::to_owned), "") {
        None => Ok(()),
        Some(mut error) => {
            error.context = context();
            Err(ClientError::Kafka(error))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_match_kafka_spelling() {
        assert_eq!(
            error_name(ResponseError::TopicAlreadyExists),
            "TOPIC_ALREADY_EXISTS"
        );
        assert_eq!(
            error_name(ResponseError::UnknownTopicOrPartition),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(
            error_name(ResponseError::Unknown(9999)),
            "UNKNOWN_ERROR_CODE_9999"
        );
        assert!(check_code(0, None, || unreachable!()).is_ok());
        let error = check_code(36, Some("exists"), || "create topic \"a\"".into()).unwrap_err();
        assert_eq!(error.kafka_error(), Some(ResponseError::TopicAlreadyExists));
        assert_eq!(
            error.to_string(),
            "create topic \"a\": TOPIC_ALREADY_EXISTS (36): exists"
        );
    }
}
