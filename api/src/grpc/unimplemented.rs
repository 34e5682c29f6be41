//! Answers for the Dapr gRPC methods Outrigger does not serve yet.

/// Expands to trait methods in the form `#[async_trait]` produces, each answering
/// `UNIMPLEMENTED` with a message naming the Dapr method. (A macro inside an
/// `#[async_trait]` impl is not rewritten by it, hence the explicit desugaring.)
macro_rules! unimplemented_methods {
    ($($method:ident($name:literal, $request:ty) -> $response:ty;)*) => {$(
        fn $method<'life0, 'async_trait>(
            &'life0 self,
            _request: tonic::Request<$request>,
        ) -> ::std::pin::Pin<Box<
            dyn ::std::future::Future<Output = Result<tonic::Response<$response>, tonic::Status>>
                + Send
                + 'async_trait,
        >>
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                Err(tonic::Status::from($crate::error::ApiError::Unimplemented {
                    method: concat!("dapr.proto.runtime.v1.Dapr/", $name).to_string(),
                }))
            })
        }
    )*};
}

pub(crate) use unimplemented_methods;
