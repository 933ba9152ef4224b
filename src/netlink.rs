//! The few rtnetlink requests meshlane makes, synchronously (a CNI plugin is a
//! short-lived single-threaded process: no async runtime).

use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::policy::Cidr;

/// The kernel's main routing table.
const RT_TABLE_MAIN: u32 = 254;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("no interface named {0}")]
    NoInterface(String),
    #[error("listing routes: {0}")]
    ListRoutes(std::io::Error),
    #[error("adding {address}/{prefix_len} to {interface}: {source}")]
    AddAddress {
        address: IpAddr,
        prefix_len: u8,
        interface: String,
        source: std::io::Error,
    },
}

/// Adds an address to an interface of the current network namespace; an address
/// that is already there is fine.
pub fn add_address(interface: &str, address: IpAddr, prefix_len: u8) -> Result<(), NetlinkError> {
    let index = interface_index(interface)?;
    let mut message = AddressMessage::default();
    message.header.family = match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    message.header.prefix_len = prefix_len;
    message.header.index = index;
    message.header.scope = if address.is_loopback() || interface == "lo" {
        AddressScope::Host
    } else {
        AddressScope::Universe
    };
    message.attributes.push(AddressAttribute::Local(address));
    message.attributes.push(AddressAttribute::Address(address));

    let mut request = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(message)),
    );
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    let add_err = |source| NetlinkError::AddAddress {
        address,
        prefix_len,
        interface: interface.to_owned(),
        source,
    };
    match request_ack(request) {
        Ok(()) => Ok(()),
        Err(err) if err.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(err) => Err(add_err(err)),
    }
}

/// A unicast route of the main table: its destination and output interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub destination: Cidr,
    /// `None` for multipath routes and routes without a device.
    pub interface: Option<String>,
}

/// The unicast routes of the main table of the current network namespace.
pub fn main_routes() -> Result<Vec<Route>, NetlinkError> {
    let mut request = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetRoute(RouteMessage::default())),
    );
    request.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    let replies = exchange(request).map_err(NetlinkError::ListRoutes)?;
    Ok(replies
        .into_iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewRoute(route) => main_table_route(&route),
            _ => None,
        })
        .collect())
}

fn main_table_route(route: &RouteMessage) -> Option<Route> {
    if route.header.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(route.header.table);
    let mut destination = None;
    let mut interface = None;
    for attribute in &route.attributes {
        match attribute {
            RouteAttribute::Table(id) => table = *id,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                destination = Some(IpAddr::V4(*ip))
            }
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                destination = Some(IpAddr::V6(*ip))
            }
            RouteAttribute::Oif(index) => interface = interface_name(*index),
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN {
        return None;
    }
    // A default route carries no destination attribute.
    let destination = destination.or(match route.header.address_family {
        AddressFamily::Inet => Some(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        AddressFamily::Inet6 => Some(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
        _ => None,
    })?;
    Some(Route {
        destination: Cidr::new(destination, route.header.destination_prefix_length)?,
        interface,
    })
}

fn interface_name(index: u32) -> Option<String> {
    let mut buffer = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes, as if_indextoname requires.
    let name = unsafe { libc::if_indextoname(index, buffer.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: on success the buffer holds a NUL-terminated name.
    let name = unsafe { std::ffi::CStr::from_ptr(buffer.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

fn interface_index(name: &str) -> Result<u32, NetlinkError> {
    let c_name =
        std::ffi::CString::new(name).map_err(|_| NetlinkError::NoInterface(name.to_owned()))?;
    // SAFETY: c_name is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(NetlinkError::NoInterface(name.to_owned()));
    }
    Ok(index)
}

/// Sends one request and waits for its acknowledgement (or error).
fn request_ack(request: NetlinkMessage<RouteNetlinkMessage>) -> std::io::Result<()> {
    exchange(request).map(|_| ())
}

/// Sends one request; returns the messages of the answer until its end (the ACK
/// of a request, the DONE of a dump), or the error the kernel answered.
fn exchange(
    mut request: NetlinkMessage<RouteNetlinkMessage>,
) -> std::io::Result<Vec<RouteNetlinkMessage>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    request.header.sequence_number = 1;
    request.finalize();
    let mut buffer = vec![0u8; request.buffer_len()];
    request.serialize(&mut buffer);
    socket.send(&buffer, 0)?;

    let mut receive = vec![0u8; 65536];
    let mut messages = Vec::new();
    loop {
        let size = socket.recv(&mut &mut receive[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&receive[offset..size])
                .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))?;
            let length = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Error(error) => {
                    return match error.code {
                        None => Ok(messages),
                        Some(code) => Err(std::io::Error::from_raw_os_error(-code.get())),
                    };
                }
                NetlinkPayload::Done(_) => return Ok(messages),
                NetlinkPayload::InnerMessage(message) => messages.push(message),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += length;
        }
    }
}
