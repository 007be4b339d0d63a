//! The application server's side of a site, for tests: its
//! `threatconnect.xml`.

/// A realistic `threatconnect.xml`: Spring beans, a commented-out old
/// setting, odd spacing and attribute order, as palisade's real XML code
/// (`palisade_actions::monitors`) must handle. `monitorsEnabled` is
/// `monitors`; `es_hosts` is the `elasticsearchHosts` property, left out
/// when empty.
pub fn threatconnect_xml(monitors: bool, es_hosts: &str) -> String {
    let es = if es_hosts.is_empty() {
        String::new()
    } else {
        format!("    <property name=\"elasticsearchHosts\" value=\"{es_hosts}\"/>\n")
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <beans xmlns=\"http://www.springframework.org/schema/beans\">\n\
         \x20 <!-- <property name=\"monitorsEnabled\" value=\"true\"/> old setting -->\n\
         \x20 <bean id=\"settings\" class=\"com.threatconnect.Settings\">\n\
         \x20   <property name=\"dbHost\"   value=\"127.0.0.1\"/>\n\
         \x20   <property  value=\"{monitors}\" name=\"monitorsEnabled\" />\n\
         {es}\
         \x20 </bean>\n\
         </beans>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::threatconnect_xml;

    #[test]
    fn the_shape_the_tests_always_used() {
        assert_eq!(
            threatconnect_xml(true, "es-a:9200"),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<beans xmlns=\"http://www.springframework.org/schema/beans\">\n  <!-- <property name=\"monitorsEnabled\" value=\"true\"/> old setting -->\n  <bean id=\"settings\" class=\"com.threatconnect.Settings\">\n    <property name=\"dbHost\"   value=\"127.0.0.1\"/>\n    <property  value=\"true\" name=\"monitorsEnabled\" />\n    <property name=\"elasticsearchHosts\" value=\"es-a:9200\"/>\n  </bean>\n</beans>\n"
        );
        assert_eq!(
            threatconnect_xml(false, ""),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<beans xmlns=\"http://www.springframework.org/schema/beans\">\n  <!-- <property name=\"monitorsEnabled\" value=\"true\"/> old setting -->\n  <bean id=\"settings\" class=\"com.threatconnect.Settings\">\n    <property name=\"dbHost\"   value=\"127.0.0.1\"/>\n    <property  value=\"false\" name=\"monitorsEnabled\" />\n  </bean>\n</beans>\n"
        );
    }
}
