//! The node's IP when `--node-ip` is not given: like the reference's host interface choice,
//! the IPv4 address of the interface holding the default route, else the first global IPv4
//! address of an interface that is up. Reads `/proc/net/route` and the interface list only; no
//! network traffic, no DNS.

use std::net::{IpAddr, Ipv4Addr};

/// Route flag: the route is up.
const RTF_UP: u32 = 0x1;

/// The interface of the IPv4 default route with the lowest metric, from the text of
/// `/proc/net/route`.
pub fn default_route_interface(proc_net_route: &str) -> Option<String> {
    proc_net_route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            if cols.len() < 8 {
                return None;
            }
            let flags = u32::from_str_radix(cols[3], 16).ok()?;
            let metric: u32 = cols[6].parse().ok()?;
            (cols[1] == "00000000" && cols[7] == "00000000" && flags & RTF_UP != 0)
                .then(|| (metric, cols[0].to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// Whether an address can identify the node: not loopback, link-local, unspecified or
/// multicast.
pub fn usable(ip: Ipv4Addr) -> bool {
    !(ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast())
}

/// Pick the node IP from (interface, address, is-up) triples, preferring the default route's
/// interface.
pub fn choose(
    addresses: &[(String, Ipv4Addr, bool)],
    default_iface: Option<&str>,
) -> Option<IpAddr> {
    let candidates = || addresses.iter().filter(|(_, ip, up)| *up && usable(*ip));
    default_iface
        .and_then(|iface| candidates().find(|(name, _, _)| name == iface))
        .or_else(|| candidates().next())
        .map(|(_, ip, _)| IpAddr::V4(*ip))
}

/// Detect the node IP on this machine; `None` when there is no usable IPv4 address.
pub fn detect() -> Option<IpAddr> {
    use nix::net::if_::InterfaceFlags;

    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let default_iface = default_route_interface(&routes);
    let addresses: Vec<(String, Ipv4Addr, bool)> = match nix::ifaddrs::getifaddrs() {
        Ok(iter) => iter
            .filter_map(|ifa| {
                let addr = ifa.address.as_ref()?.as_sockaddr_in()?.ip();
                Some((
                    ifa.interface_name.clone(),
                    addr,
                    ifa.flags.contains(InterfaceFlags::IFF_UP),
                ))
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list network interfaces");
            Vec::new()
        }
    };
    choose(&addresses, default_iface.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t0000A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
tun0\t00000000\t00000000\t0000\t0\t0\t0\t00000000\t0\t0\t0
";

    #[test]
    fn default_route_with_lowest_metric_wins() {
        assert_eq!(default_route_interface(ROUTES).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
        assert_eq!(default_route_interface(""), None);
    }

    #[test]
    fn chooses_the_default_route_interface_then_any_usable() {
        let addrs = vec![
            ("lo".to_string(), Ipv4Addr::new(127, 0, 0, 1), true),
            ("docker0".to_string(), Ipv4Addr::new(172, 17, 0, 1), false),
            ("eth1".to_string(), Ipv4Addr::new(169, 254, 3, 3), true),
            ("wlan0".to_string(), Ipv4Addr::new(192, 168, 1, 7), true),
            ("eth0".to_string(), Ipv4Addr::new(10, 0, 0, 5), true),
        ];
        assert_eq!(
            choose(&addrs, Some("eth0")),
            Some("10.0.0.5".parse().unwrap())
        );
        assert_eq!(
            choose(&addrs, Some("gone0")),
            Some("192.168.1.7".parse().unwrap())
        );
        assert_eq!(choose(&addrs, None), Some("192.168.1.7".parse().unwrap()));
        assert_eq!(choose(&addrs[..3], None), None);
    }
}
