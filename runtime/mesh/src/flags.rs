//! Envoy's response flags: why the mesh, not the upstream app, produced or shaped an answer.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResponseFlag {
    /// No route for the app id or path (`NR`).
    NoRoute,
    /// The route names a cluster that is not configured (`NC`).
    NoClusterFound,
    /// No healthy endpoint in the cluster (`UH`).
    NoHealthyUpstream,
    /// A circuit breaker threshold was reached (`UO`).
    UpstreamOverflow,
    /// The upstream did not answer within the timeout (`UT`).
    UpstreamRequestTimeout,
    /// The connection to the upstream failed (`UF`).
    UpstreamConnectionFailure,
    /// The upstream reset the request (`UR`).
    UpstreamRemoteReset,
    /// Retries were exhausted on upstream failures (`URX`).
    UpstreamRetryLimitExceeded,
    /// The fault filter aborted the request (`FI`).
    FaultInjected,
    /// The fault filter delayed the request (`DI`).
    DelayInjected,
    /// The request itself was malformed (`DPE`).
    DownstreamProtocolError,
}

impl ResponseFlag {
    /// Envoy's short code, as printed in access logs.
    pub fn code(self) -> &'static str {
        match self {
            Self::NoRoute => "NR",
            Self::NoClusterFound => "NC",
            Self::NoHealthyUpstream => "UH",
            Self::UpstreamOverflow => "UO",
            Self::UpstreamRequestTimeout => "UT",
            Self::UpstreamConnectionFailure => "UF",
            Self::UpstreamRemoteReset => "UR",
            Self::UpstreamRetryLimitExceeded => "URX",
            Self::FaultInjected => "FI",
            Self::DelayInjected => "DI",
            Self::DownstreamProtocolError => "DPE",
        }
    }
}

impl fmt::Display for ResponseFlag {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.code())
    }
}

/// The flags of one request, printed comma-separated as Envoy does (`-` when none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFlags(Vec<ResponseFlag>);

impl ResponseFlags {
    pub fn add(&mut self, flag: ResponseFlag) {
        if !self.0.contains(&flag) {
            self.0.push(flag);
        }
    }

    pub fn contains(&self, flag: ResponseFlag) -> bool {
        self.0.contains(&flag)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = ResponseFlag> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for ResponseFlags {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return formatter.write_str("-");
        }
        for (index, flag) in self.0.iter().enumerate() {
            if index > 0 {
                formatter.write_str(",")?;
            }
            formatter.write_str(flag.code())?;
        }
        Ok(())
    }
}
