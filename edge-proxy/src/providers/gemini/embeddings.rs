//! OpenAI's embeddings request to Gemini's `embedContent` (one input) or `batchEmbedContents`
//! (several), and the vectors back in OpenAI's list. Gemini embeds text only and reports no
//! token usage (the edge counts the input itself). `user` is attribution only and dropped.

use super::unsupported;
use super::wire::{
    BatchEmbedContentsRequest, BatchEmbedContentsResponse, Content, ContentEmbedding,
    EmbedContentRequest, EmbedContentResponse, Part,
};
use crate::api::embeddings::{Embedding, EmbeddingsRequest, EmbeddingsResponse};
use crate::providers::ProviderError;

/// Which method serves the request, with its body.
#[derive(Debug, PartialEq)]
pub enum EmbedCall {
    Single(EmbedContentRequest),
    Batch(BatchEmbedContentsRequest),
}

/// `resource` is the model's resource name (`models/<name>`), which each batch entry repeats.
pub fn embed_call(request: &EmbeddingsRequest, resource: &str) -> Result<EmbedCall, ProviderError> {
    if let Some(field) = request
        .extra
        .iter()
        .find(|(_, value)| !value.is_null())
        .map(|(k, _)| k)
    {
        return Err(unsupported(
            field,
            "not a parameter of OpenAI's embeddings API",
        ));
    }
    let texts = request.input.texts().ok_or_else(|| {
        unsupported(
            "input",
            "Gemini embeds text; token arrays cannot be sent to it",
        )
    })?;
    let entry = |text: &str, model: Option<String>| EmbedContentRequest {
        model,
        content: Content {
            role: None,
            parts: vec![Part::text(text.to_owned())],
        },
        output_dimensionality: request.dimensions,
    };
    Ok(match texts.as_slice() {
        [text] => EmbedCall::Single(entry(text, None)),
        texts => EmbedCall::Batch(BatchEmbedContentsRequest {
            requests: texts
                .iter()
                .map(|text| entry(text, Some(resource.to_owned())))
                .collect(),
        }),
    })
}

pub fn from_single(response: EmbedContentResponse, model: &str) -> EmbeddingsResponse {
    list(vec![response.embedding], model)
}

/// `Err` (the reason) when Gemini returned another number of vectors than it was sent inputs.
pub fn from_batch(
    response: BatchEmbedContentsResponse,
    inputs: usize,
    model: &str,
) -> Result<EmbeddingsResponse, String> {
    if response.embeddings.len() != inputs {
        return Err(format!(
            "{} embeddings for {inputs} inputs",
            response.embeddings.len()
        ));
    }
    Ok(list(response.embeddings, model))
}

fn list(embeddings: Vec<ContentEmbedding>, model: &str) -> EmbeddingsResponse {
    EmbeddingsResponse {
        object: "list".to_owned(),
        data: embeddings
            .into_iter()
            .zip(0u32..)
            .map(|(embedding, index)| Embedding {
                object: "embedding".to_owned(),
                index,
                embedding: embedding.values,
            })
            .collect(),
        model: model.to_owned(),
        usage: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn call(body: &str) -> Result<EmbedCall, ProviderError> {
        embed_call(
            &EmbeddingsRequest::parse(body.as_bytes()).unwrap(),
            "models/gemini-embedding-001",
        )
    }

    fn rejected(body: &str) -> String {
        match call(body).unwrap_err() {
            ProviderError::Unsupported {
                provider_kind: "gemini",
                param,
                ..
            } => param,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn one_input_is_a_single_call_and_several_a_batch() {
        let EmbedCall::Single(single) =
            call(r#"{"model":"e","input":["hi"],"dimensions":8,"user":"u"}"#).unwrap()
        else {
            panic!("expected a single call");
        };
        assert_eq!(
            serde_json::to_value(single).unwrap(),
            serde_json::json!({"content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 8})
        );
        let EmbedCall::Batch(batch) = call(r#"{"model":"e","input":["a","b"]}"#).unwrap() else {
            panic!("expected a batch");
        };
        assert_eq!(batch.requests.len(), 2);
        assert_eq!(
            batch.requests[1].model.as_deref(),
            Some("models/gemini-embedding-001")
        );
    }

    #[test]
    fn token_inputs_and_unknown_fields_are_rejected() {
        assert_eq!(rejected(r#"{"model":"e","input":[1,2,3]}"#), "input");
        assert_eq!(rejected(r#"{"model":"e","input":[[1],[2]]}"#), "input");
        assert_eq!(
            rejected(r#"{"model":"e","input":"x","task_type":"q"}"#),
            "task_type"
        );
    }

    #[test]
    fn a_batch_answer_must_match_the_inputs() {
        let response: BatchEmbedContentsResponse =
            serde_json::from_str(r#"{"embeddings":[{"values":[0.5]}]}"#).unwrap();
        assert!(from_batch(response.clone(), 2, "m").is_err());
        let list = from_batch(response, 1, "m").unwrap();
        assert_eq!(list.data[0].embedding, vec![0.5]);
        assert_eq!(list.data[0].index, 0);
        assert!(list.usage.is_none());
    }
}
